/* test_filters.c - metadata filters (search, delete, list), listing with
 * keyset pagination, and `embstore list`, against the real database. */
#include <jansson.h>
#include <pthread.h>

#include "test.h"

#define DIM 8

/* Document i's vector: spread around the sphere, never zero. */
static void vec(int i, float v[DIM]) {
  for (int d = 0; d < DIM; d++)
    v[d] = (float)((i * 37 + d * 11) % 29) / 7.0f - 2.0f + 0.01f * (float)(d + 1);
}

/* Documents "d00000".."d<n-1>" of source "s<i % 3>", metadata
 * {"n": i, "lang": "en" or "fr" (i % 2), "tags": [...], "rare": true for
 * every 50th, "workspace": "w<i % 2>"}, k chunks each. */
static void put_docs(es_store *s, int from, int n, int k) {
  es_doc *d = calloc((size_t)n, sizeof *d);
  float (*v)[DIM] = calloc((size_t)n, sizeof *v);
  char (*id)[16] = calloc((size_t)n, sizeof *id);
  char (*meta)[160] = calloc((size_t)n, sizeof *meta);
  char (*src)[8] = calloc((size_t)n, sizeof *src);
  es_chunk *ch = calloc((size_t)n * (size_t)(k > 0 ? k : 1), sizeof *ch);
  char (*cid)[24] = calloc((size_t)n * (size_t)(k > 0 ? k : 1), sizeof *cid);
  for (int j = 0; j < n; j++) {
    int i = from + j;
    snprintf(id[j], sizeof id[j], "d%05d", i);
    snprintf(src[j], sizeof src[j], "s%d", i % 3);
    snprintf(meta[j], sizeof meta[j],
             "{\"n\": %d, \"lang\": \"%s\", \"tags\": [\"t%d\", \"all\"]%s, "
             "\"workspace\": \"w%d\"}",
             i, i % 2 ? "fr" : "en", i % 5, i % 50 == 0 ? ", \"rare\": true" : "",
             i % 2);
    vec(i, v[j]);
    for (int c = 0; c < k; c++) {
      snprintf(cid[j * k + c], sizeof cid[0], "%s#%d", id[j], c);
      ch[j * k + c] = (es_chunk){.id = cid[j * k + c], .text = "chunk"};
    }
    d[j] = (es_doc){.id = id[j], .text = "text", .embedding = v[j], .dim = DIM,
                    .metadata_json = meta[j], .source_id = src[j],
                    .has_chunks = 1, .chunks = k ? &ch[j * k] : NULL,
                    .n_chunks = (size_t)k};
  }
  es_batch_result *r = th_batch_upsert(s, d, (size_t)n, 500, ES_OK);
  ASSERT_INT_EQ(r->failed, 0);
  es_batch_result_free(r);
  free(d);
  free(v);
  free(id);
  free(meta);
  free(src);
  free(ch);
  free(cid);
}

/* The ids of results, in order, as "a,b,c". */
static char *ids_of(const es_results *r) {
  size_t cap = 16 * (r->n + 1), len = 0;
  char *out = calloc(1, cap);
  for (size_t i = 0; i < r->n; i++)
    len += (size_t)snprintf(out + len, cap - len, "%s%s", i ? "," : "", r->hits[i].id);
  return out;
}

/* Whether the stored metadata of id contains filter (asked of PostgreSQL
 * itself, the independent judge). */
static bool matches(const char *id, const char *filter) {
  char sql[512];
  snprintf(sql, sizeof sql, "SELECT count(*) FROM embeddings WHERE id = '%s' "
           "AND metadata @> '%s'::jsonb", id, filter);
  return th_int(sql) == 1;
}

TEST(filtered_search_returns_k_matches_in_every_form_of_the_filter) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  put_docs(s, 0, 2000, 0);
  th_exec("ANALYZE embeddings");
  float q[DIM];
  vec(7, q);
  /* (filter, how many documents match it) */
  static const struct {
    const char *filter;
    int matching;
  } cases[] = {
      {"{\"rare\": true}", 40},                   /* 2%: the iterative scan */
      {"{\"lang\": \"fr\", \"tags\": [\"t3\"]}", 200}, /* object and array */
      {"{\"n\": 1234}", 1},                       /* fewer than k */
      {"{\"tags\": [\"t1\", \"all\"]}", 400},
      {"{}", 2000},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    th_set_fail_context("filter %s", cases[c].filter);
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM embeddings WHERE metadata "
             "@> '%s'::jsonb", cases[c].filter);
    ASSERT_INT_EQ(th_int(sql), cases[c].matching);
    es_search_params p;
    es_search_params_init(&p);
    p.vector = q;
    p.dim = DIM;
    p.k = 10;
    p.filter_json = cases[c].filter;
    es_results *r = NULL;
    ASSERT_OK(s, es_search(s, &p, &r));
    ASSERT_INT_EQ((long long)r->n, cases[c].matching < 10 ? cases[c].matching : 10);
    for (size_t i = 0; i < r->n; i++)
      ASSERT(matches(r->hits[i].id, cases[c].filter));
    /* The same hits as an exact scan over the matching rows. */
    es_results *truth = NULL;
    p.exact = 1;
    ASSERT_OK(s, es_search(s, &p, &truth));
    char *a = ids_of(r), *b = ids_of(truth);
    if (cases[c].matching <= 400) /* the index is approximate beyond */
      ASSERT_STR_EQ(a, b);
    free(a);
    free(b);
    es_results_free(truth);
    es_results_free(r);
  }
  th_set_fail_context(NULL);
  /* With the workspace and source filters too. */
  es_search_params p;
  es_search_params_init(&p);
  p.vector = q;
  p.dim = DIM;
  p.k = 5;
  p.filter_json = "{\"lang\": \"en\"}";
  p.workspace = "w0";
  p.source_id = "s1";
  es_results *r = NULL;
  ASSERT_OK(s, es_search(s, &p, &r));
  ASSERT_INT_EQ((long long)r->n, 5);
  for (size_t i = 0; i < r->n; i++) {
    ASSERT(matches(r->hits[i].id, "{\"lang\": \"en\", \"workspace\": \"w0\"}"));
    ASSERT_STR_EQ(r->hits[i].source_id, "s1");
  }
  es_results_free(r);
  es_close(s);
}

TEST(a_filter_that_is_not_one_json_object_is_refused_naming_the_byte) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  put_docs(s, 0, 10, 0);
  float q[DIM];
  vec(1, q);
  static const struct {
    const char *filter, *want;
  } bad[] = {
      {"[1]", "filter: not a JSON object (at byte 1)"},
      {"{\"a\":}", "(at byte 6)"},
      {"{\"a\": 1} x", "trailing characters"},
      {"\"s\"", "not a JSON object"},
      {"", "not a JSON object"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    th_set_fail_context("filter '%s'", bad[i].filter);
    es_search_params p;
    es_search_params_init(&p);
    p.vector = q;
    p.dim = DIM;
    p.filter_json = bad[i].filter;
    es_results *r = NULL;
    ASSERT_INT_EQ(es_search(s, &p, &r), ES_EINVAL);
    ASSERT_CONTAINS(es_errmsg(s), bad[i].want);
    ASSERT(r == NULL);
    es_list_params lp;
    es_list_params_init(&lp);
    lp.filter_json = bad[i].filter;
    es_document_list *l = NULL;
    ASSERT_INT_EQ(es_list_documents(s, &lp, &l), ES_EINVAL);
    ASSERT_CONTAINS(es_errmsg(s), bad[i].want);
    es_delete_result *dr = NULL;
    ASSERT_INT_EQ(es_delete_by_filter(s, bad[i].filter, NULL, &dr), ES_EINVAL);
    ASSERT_CONTAINS(es_errmsg(s), bad[i].want);
    ASSERT(dr == NULL);
  }
  th_set_fail_context(NULL);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings"), 10);
  /* The tool says so before it connects: a usage error, exit 1. */
  const char *argv[] = {"--db", th_conninfo(), "search", "--vector",
                        "[1,2,3,4,5,6,7,8]", "--filter", "{\"lang\": en}", NULL};
  th_proc pr = th_cli(NULL, argv);
  ASSERT_INT_EQ(pr.status, 1);
  ASSERT_CONTAINS(pr.err, "--filter: ");
  ASSERT_CONTAINS(pr.err, "(at byte 10)");
  th_proc_free(&pr);
  const char *argv2[] = {"--db", th_conninfo(), "delete", "--filter", "[]", NULL};
  pr = th_cli(NULL, argv2);
  ASSERT_INT_EQ(pr.status, 1);
  ASSERT_CONTAINS(pr.err, "--filter: not a JSON object");
  th_proc_free(&pr);
  const char *argv3[] = {"--db", th_conninfo(), "list", "--filter", "{", NULL};
  pr = th_cli(NULL, argv3);
  ASSERT_INT_EQ(pr.status, 1);
  th_proc_free(&pr);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings"), 10);
  es_close(s);
}

TEST(delete_by_filter_counts_exactly_restricts_and_a_dry_run_changes_nothing) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  put_docs(s, 0, 300, 2);
  const char *fr_t3 = "{\"lang\": \"fr\", \"tags\": [\"t3\"]}";
  long long want = th_int("SELECT count(*) FROM embeddings WHERE metadata @> "
                          "'{\"lang\": \"fr\", \"tags\": [\"t3\"]}'");
  ASSERT_INT_EQ(want, 30);
  char *before = th_text("SELECT md5(string_agg(id || xmin::text, ',' ORDER BY id)) "
                         "FROM embeddings");
  es_delete_options o;
  es_delete_options_init(&o);
  o.dry_run = 1;
  es_delete_result *r = NULL;
  ASSERT_OK(s, es_delete_by_filter(s, fr_t3, &o, &r));
  ASSERT_INT_EQ(r->deleted, 30);
  ASSERT_INT_EQ(r->chunks_removed, 60);
  ASSERT_INT_EQ(r->dry_run, 1);
  es_delete_result_free(r);
  /* Restrict: chunks block it, nothing goes, in a dry run and for real. */
  o.no_cascade = 1;
  ASSERT_INT_EQ(es_delete_by_filter(s, fr_t3, &o, &r), ES_ECONFLICT);
  ASSERT_CONTAINS(es_errmsg(s), "60 chunks of the documents matching the filter");
  o.dry_run = 0;
  ASSERT_INT_EQ(es_delete_by_filter(s, fr_t3, &o, &r), ES_ECONFLICT);
  ASSERT_CONTAINS(es_errmsg(s), "60 chunks of 30 documents matching the filter "
                  "block the delete");
  char *after = th_text("SELECT md5(string_agg(id || xmin::text, ',' ORDER BY id)) "
                        "FROM embeddings");
  ASSERT_STR_EQ(after, before);
  free(after);
  free(before);
  /* Within one workspace and one source: w1 holds the odd numbers. */
  es_delete_options_init(&o);
  o.workspace = "w1";
  o.filter_json = "{\"tags\": [\"t0\"]}"; /* i % 5 == 0, odd: 30 of them */
  ASSERT_OK(s, es_delete_by_source(s, "s0", &o, &r)); /* i % 3 == 0 too */
  ASSERT_INT_EQ(r->deleted, 10);
  ASSERT_INT_EQ(r->chunks_removed, 20);
  es_delete_result_free(r);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings WHERE (metadata->>'n')::int "
                       "% 30 = 15"), 0);
  /* A cached search that shows them is forgotten once they are gone. */
  float q[DIM];
  vec(13, q);
  es_search_params sp;
  es_search_params_init(&sp);
  sp.vector = q;
  sp.dim = DIM;
  sp.k = 5;
  sp.filter_json = "{\"lang\": \"fr\"}";
  es_results *hits = NULL;
  ASSERT_OK(s, es_search(s, &sp, &hits));
  bool shown = false;
  for (size_t i = 0; i < hits->n; i++)
    shown |= matches(hits->hits[i].id, fr_t3);
  ASSERT(shown);
  es_results_free(hits);
  /* For real, cascading: exactly those documents and their chunks. */
  es_delete_options_init(&o);
  ASSERT_OK(s, es_delete_by_filter(s, fr_t3, &o, &r));
  ASSERT_INT_EQ(r->deleted, 30); /* i % 10 == 3: none of those went above */
  ASSERT_INT_EQ(r->chunks_removed, 60);
  es_delete_result_free(r);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings WHERE metadata @> "
                       "'{\"lang\": \"fr\", \"tags\": [\"t3\"]}'"), 0);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM chunks c WHERE NOT EXISTS (SELECT 1 "
                       "FROM embeddings e WHERE e.id = c.document_id)"), 0);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings"), 300 - 10 - 30);
  es_runtime rt;
  es_runtime_get(s, &rt);
  int64_t hits_before = rt.cache_hits;
  ASSERT_OK(s, es_search(s, &sp, &hits));
  es_runtime_get(s, &rt);
  ASSERT_INT_EQ(rt.cache_hits, hits_before); /* asked of the database again */
  ASSERT_INT_EQ((long long)hits->n, 5);
  for (size_t i = 0; i < hits->n; i++) /* every hit still stored */
    ASSERT(matches(hits->hits[i].id, "{}"));
  es_results_free(hits);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM chunks"), 2 * (300 - 10 - 30));
  /* A delete by id takes no filter. */
  const char *ids[1] = {"d00001"};
  o.filter_json = "{}";
  ASSERT_INT_EQ(es_delete_documents(s, ids, 1, &o, &r), ES_EINVAL);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings WHERE id = 'd00001'"), 1);
  es_close(s);
}

/* Inserts documents while a walk pages through the store. */
typedef struct writer {
  volatile int stop;
  int written;
} writer;

static void *write_more(void *arg) {
  writer *w = arg;
  es_store *s = th_open();
  for (int i = 0; !w->stop && i < 2000; i++) {
    char id[24], cid[32];
    float v[DIM];
    /* Ids among and after the existing ones: d00010.5 sorts after d00010. */
    snprintf(id, sizeof id, "d%05d.%d", (i * 7919) % 3000, i);
    snprintf(cid, sizeof cid, "%s#0", id);
    vec(i, v);
    es_chunk ch = {.id = cid, .text = "new"};
    es_doc d = {.id = id, .text = "new", .embedding = v, .dim = DIM,
                .metadata_json = "{\"new\": true}", .has_chunks = 1,
                .chunks = &ch, .n_chunks = 1};
    if (es_upsert(s, &d, NULL) == ES_OK)
      w->written++;
  }
  es_close(s);
  return NULL;
}

TEST(listing_by_pages_visits_every_document_once_while_documents_are_inserted) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  put_docs(s, 0, 3000, 1);
  writer w = {0, 0};
  pthread_t t;
  ASSERT_INT_EQ(pthread_create(&t, NULL, write_more, &w), 0);
  char *seen = calloc(3000, 1);
  char last[64] = "";
  es_list_params p;
  es_list_params_init(&p);
  p.limit = 97;
  p.include_chunks = 1;
  int pages = 0, originals = 0;
  for (;;) {
    es_document_list *l = NULL;
    ASSERT_OK(s, es_list_documents(s, &p, &l));
    pages++;
    for (size_t i = 0; i < l->n; i++) {
      const es_document *d = &l->documents[i];
      ASSERT(strcmp(d->id, last) > 0); /* in order, never twice */
      snprintf(last, sizeof last, "%s", d->id);
      ASSERT_INT_EQ((long long)d->n_chunks, 1);
      ASSERT(strncmp(d->chunks[0].id, d->id, strlen(d->id)) == 0);
      ASSERT(d->embedding == NULL);
      if (strchr(d->id, '.') == NULL) {
        int n = atoi(d->id + 1);
        ASSERT(!seen[n]);
        seen[n] = 1;
        originals++;
      }
    }
    if (l->next_after == NULL) {
      ASSERT(l->n < (size_t)p.limit || l->n == (size_t)p.limit);
      es_document_list_free(l);
      break;
    }
    ASSERT_INT_EQ((long long)l->n, p.limit);
    free((char *)p.after);
    p.after = strdup(l->next_after);
    es_document_list_free(l);
  }
  w.stop = 1;
  pthread_join(t, NULL);
  ASSERT_INT_EQ(originals, 3000);
  ASSERT(pages >= 3000 / 97);
  ASSERT(w.written > 0);
  free((char *)p.after);
  free(seen);

  /* Filters, source and workspace narrow the walk as they narrow a search. */
  es_list_params_init(&p);
  p.filter_json = "{\"rare\": true}";
  p.source_id = "s0";
  p.workspace = "w0";
  p.limit = 10000;
  p.include_embedding = 1;
  es_document_list *l = NULL;
  ASSERT_OK(s, es_list_documents(s, &p, &l));
  /* i % 50 == 0 and i % 3 == 0 (even, so w0): i % 150 == 0, 20 of them. */
  ASSERT_INT_EQ((long long)l->n, 20);
  ASSERT(l->next_after == NULL);
  float v[DIM];
  vec(150, v);
  ASSERT_STR_EQ(l->documents[1].id, "d00150");
  ASSERT_INT_EQ((long long)l->documents[1].dim, DIM);
  ASSERT_MEM_EQ(l->documents[1].embedding, v, sizeof v);
  es_document_list_free(l);
  p.limit = 0;
  ASSERT_INT_EQ(es_list_documents(s, &p, &l), ES_EINVAL);
  ASSERT_CONTAINS(es_errmsg(s), "limit must be 1..10000");
  es_close(s);
}

TEST(cli_list_pages_with_after_and_deletes_by_filter_as_the_library_counts) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  put_docs(s, 0, 25, 2);
  es_close(s);
  const char *argv[] = {"--db", th_conninfo(), "list", "--limit", "10",
                        "--filter", "{\"lang\": \"en\"}", "--json", NULL};
  th_proc p = th_cli(NULL, argv);
  ASSERT_INT_EQ(p.status, 0);
  json_error_t e;
  json_t *j = json_loads(p.out, 0, &e);
  ASSERT(j != NULL);
  json_t *docs = json_object_get(j, "documents");
  ASSERT_INT_EQ((long long)json_array_size(docs), 10);
  ASSERT_STR_EQ(json_string_value(json_object_get(json_array_get(docs, 0), "id")),
                "d00000");
  ASSERT_STR_EQ(json_string_value(json_object_get(json_array_get(docs, 9), "id")),
                "d00018");
  ASSERT(json_object_get(json_array_get(docs, 0), "chunks") == NULL);
  ASSERT_STR_EQ(json_string_value(json_object_get(j, "next_after")), "d00018");
  json_decref(j);
  th_proc_free(&p);
  const char *argv2[] = {"--db", th_conninfo(), "list", "--limit", "10",
                         "--filter", "{\"lang\": \"en\"}", "--after", "d00018",
                         "--chunks", "--json", NULL};
  p = th_cli(NULL, argv2);
  ASSERT_INT_EQ(p.status, 0);
  j = json_loads(p.out, 0, &e);
  docs = json_object_get(j, "documents");
  ASSERT_INT_EQ((long long)json_array_size(docs), 3); /* 20, 22, 24 */
  ASSERT(json_is_null(json_object_get(j, "next_after")));
  json_t *chunks = json_object_get(json_array_get(docs, 2), "chunks");
  ASSERT_INT_EQ((long long)json_array_size(chunks), 2);
  ASSERT_STR_EQ(json_string_value(json_object_get(json_array_get(chunks, 1), "id")),
                "d00024#1");
  json_decref(j);
  th_proc_free(&p);
  /* The human form: a table and the way to the next page. */
  const char *argv3[] = {"--db", th_conninfo(), "list", "--limit", "2", NULL};
  p = th_cli(NULL, argv3);
  ASSERT_INT_EQ(p.status, 0);
  ASSERT_CONTAINS(p.out, "d00001");
  ASSERT_CONTAINS(p.out, "more: --after d00001\n");
  th_proc_free(&p);
  /* delete --filter, as the library counts it. */
  const char *argv4[] = {"--db", th_conninfo(), "delete", "--filter",
                         "{\"lang\": \"fr\"}", "--dry-run", "--json", NULL};
  p = th_cli(NULL, argv4);
  ASSERT_INT_EQ(p.status, 0);
  ASSERT_STR_EQ(p.out, "{\"deleted\":12,\"chunks_removed\":24,\"dry_run\":true}\n");
  th_proc_free(&p);
  const char *argv5[] = {"--db", th_conninfo(), "delete", "--filter",
                         "{\"lang\": \"fr\"}", NULL};
  p = th_cli(NULL, argv5);
  ASSERT_INT_EQ(p.status, 0);
  ASSERT_STR_EQ(p.out, "deleted 12 documents and 24 chunks matching the filter\n");
  th_proc_free(&p);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings"), 13);
  /* {} matches every document: only with --all. */
  const char *argv6[] = {"--db", th_conninfo(), "delete", "--filter", "{ }", NULL};
  p = th_cli(NULL, argv6);
  ASSERT_INT_EQ(p.status, 1);
  ASSERT_CONTAINS(p.err, "matches every document: add --all");
  th_proc_free(&p);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings"), 13);
  const char *argv7[] = {"--db", th_conninfo(), "delete", "--filter", "{}", "--all",
                         "--json", NULL};
  p = th_cli(NULL, argv7);
  ASSERT_INT_EQ(p.status, 0);
  ASSERT_STR_EQ(p.out, "{\"deleted\":13,\"chunks_removed\":26,\"dry_run\":false}\n");
  th_proc_free(&p);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings"), 0);
}
