/* test_text.c - full-text and hybrid search: ranking as PostgreSQL ranks,
 * Reciprocal Rank Fusion computed independently, the store's text search
 * configuration, and its concurrently built, resumable index. */
#include <math.h>
#include <pthread.h>

#include "test.h"

#define DIM 4

static const char *const texts[] = {
    "The quick brown fox jumps over the lazy dog",
    "Foxes are quick and clever animals of the forest",
    "A lazy afternoon with dogs sleeping in the sun",
    "Vector databases store embeddings for retrieval",
    "Retrieval augmented generation uses a vector store",
    "The dog and the fox became friends",
    "Nothing to see here at all",
    "Quick retrieval of documents by their embeddings",
    "Clever dogs learn tricks quickly",
    "A fox, a dog and a vector walk into a bar",
};
#define N_TEXTS (sizeof texts / sizeof texts[0])

static void vec(int i, float v[DIM]) {
  for (int d = 0; d < DIM; d++)
    v[d] = (float)((i * 5 + d * 3) % 11) / 4.0f + 0.1f;
}

/* Documents t00..t09 with the texts above; workspace w<i % 2>. */
static void put_texts(es_store *s) {
  for (size_t i = 0; i < N_TEXTS; i++) {
    char id[8], meta[64];
    float v[DIM];
    snprintf(id, sizeof id, "t%02zu", i);
    snprintf(meta, sizeof meta, "{\"workspace\": \"w%zu\", \"i\": %zu}", i % 2, i);
    vec((int)i, v);
    es_doc d = {.id = id, .text = texts[i], .embedding = v, .dim = DIM,
                .metadata_json = meta};
    ASSERT_OK(s, es_upsert(s, &d, NULL));
  }
}

/* The ids PostgreSQL itself ranks first for query (english), as "a,b". */
static char *server_ranking(const char *config, const char *query, int k) {
  char sql[800];
  snprintf(sql, sizeof sql,
           "SELECT coalesce(string_agg(id, ',' ORDER BY r DESC, id), '') FROM "
           "(SELECT id, ts_rank_cd(to_tsvector('%s', text), q) r FROM embeddings, "
           "websearch_to_tsquery('%s', '%s') q WHERE to_tsvector('%s', text) @@ q "
           "ORDER BY r DESC, id LIMIT %d) x", config, config, query, config, k);
  return th_text(sql);
}

static char *ids_of(const es_results *r) {
  char *out = calloc(1, 16 * (r->n + 1));
  size_t len = 0;
  for (size_t i = 0; i < r->n; i++)
    len += (size_t)sprintf(out + len, "%s%s", i ? "," : "", r->hits[i].id);
  return out;
}

TEST(text_search_ranks_as_postgresql_does_with_web_search_syntax) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  put_texts(s);
  static const char *const queries[] = {
      "fox", "quick fox", "\"lazy dog\"", "fox OR retrieval", "dog -fox",
      "foxes", "embeddings vector", "nothingmatchesthis"};
  for (size_t q = 0; q < sizeof queries / sizeof queries[0]; q++) {
    th_set_fail_context("query %s", queries[q]);
    es_search_params p;
    es_search_params_init(&p);
    p.text = queries[q];
    p.k = 5;
    es_results *r = NULL;
    ASSERT_OK(s, es_search(s, &p, &r));
    ASSERT_INT_EQ(r->mode, ES_SEARCH_TEXT);
    char *got = ids_of(r), *want = server_ranking("english", queries[q], 5);
    ASSERT_STR_EQ(got, want);
    for (size_t i = 0; i < r->n; i++) {
      ASSERT_INT_EQ(r->hits[i].text_rank, (long long)i + 1);
      ASSERT_INT_EQ(r->hits[i].vector_rank, 0);
      ASSERT(isnan(r->hits[i].distance));
      ASSERT(r->hits[i].score > 0);
      char sql[400];
      snprintf(sql, sizeof sql, "SELECT ts_rank_cd(to_tsvector('english', text), "
               "websearch_to_tsquery('english', '%s'))::text FROM embeddings "
               "WHERE id = '%s'", queries[q], r->hits[i].id);
      char *want_score = th_text(sql);
      ASSERT_DBL_EQ(r->hits[i].score, strtod(want_score, NULL), 0);
      free(want_score);
      if (i > 0)
        ASSERT(r->hits[i].score <= r->hits[i - 1].score);
    }
    free(got);
    free(want);
    es_results_free(r);
  }
  th_set_fail_context(NULL);
  /* english stems: "foxes" finds "fox"; a filter narrows to k matches. */
  es_search_params p;
  es_search_params_init(&p);
  p.text = "foxes";
  p.k = 10;
  p.filter_json = "{\"workspace\": \"w1\"}";
  es_results *r = NULL;
  ASSERT_OK(s, es_search(s, &p, &r));
  char *got = ids_of(r);
  ASSERT_STR_EQ(got, "t01,t05,t09"); /* the odd ones that name a fox */
  free(got);
  es_results_free(r);
  /* The index the statement's expression matches. */
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM pg_indexes WHERE indexname = "
                       "'embeddings_text_idx' AND indexdef LIKE '%gin (to_tsvector("
                       "''english''::regconfig, \"left\"(text, 200000)))'"), 1);
  /* Stop words only: an error that says so, not an empty answer. */
  p.text = "the and";
  p.filter_json = NULL;
  ASSERT_INT_EQ(es_search(s, &p, &r), ES_EINVAL);
  ASSERT_CONTAINS(es_errmsg(s), "has no word that text search keeps");
  es_close(s);
}

/* RRF by hand: ranks from exact SQL on each side, then the sum. */
typedef struct fused {
  char id[8];
  int vr, tr;
  double score;
} fused;

static int by_score(const void *a, const void *b) {
  const fused *x = a, *y = b;
  if (x->score != y->score)
    return x->score > y->score ? -1 : 1;
  return strcmp(x->id, y->id);
}

TEST(hybrid_search_fuses_the_ranks_as_reciprocal_rank_fusion_computed_apart) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  put_texts(s);
  float q[DIM] = {0.3f, 1.2f, 2.2f, 0.4f};
  static const struct {
    const char *text;
    int rrf_k;
    double wv, wt;
  } cases[] = {{"fox dog", 0, 0, 0}, {"retrieval OR embeddings", 10, 2, 0.5},
               {"quick", 1, 0, 1}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    th_set_fail_context("case %zu", c);
    fused f[N_TEXTS];
    memset(f, 0, sizeof f);
    for (size_t i = 0; i < N_TEXTS; i++)
      snprintf(f[i].id, sizeof f[i].id, "t%02zu", i);
    /* Vector ranks: every document (the pool of 100 holds them all). */
    char sql[600];
    snprintf(sql, sizeof sql, "SELECT string_agg(id, ',' ORDER BY embedding <=> "
             "'[%g,%g,%g,%g]', id) FROM embeddings", q[0], q[1], q[2], q[3]);
    char *order = th_text(sql);
    int rank = 1;
    for (char *tok = strtok(order, ","); tok; tok = strtok(NULL, ","))
      f[atoi(tok + 1)].vr = rank++;
    free(order);
    char *torder = server_ranking("english", cases[c].text, 100);
    rank = 1;
    for (char *tok = strtok(torder, ","); tok; tok = strtok(NULL, ","))
      f[atoi(tok + 1)].tr = rank++;
    free(torder);
    double k = cases[c].rrf_k ? cases[c].rrf_k : 60;
    double wv = cases[c].wv || cases[c].wt ? cases[c].wv : 1;
    double wt = cases[c].wv || cases[c].wt ? cases[c].wt : 1;
    for (size_t i = 0; i < N_TEXTS; i++)
      f[i].score = (f[i].vr ? wv / (k + f[i].vr) : 0) + (f[i].tr ? wt / (k + f[i].tr) : 0);
    qsort(f, N_TEXTS, sizeof f[0], by_score);

    es_search_params p;
    es_search_params_init(&p);
    p.vector = q;
    p.dim = DIM;
    p.text = cases[c].text;
    p.k = 6;
    p.exact = 1;
    p.rrf_k = cases[c].rrf_k;
    p.weight_vector = cases[c].wv;
    p.weight_text = cases[c].wt;
    es_results *r = NULL;
    ASSERT_OK(s, es_search(s, &p, &r));
    ASSERT_INT_EQ(r->mode, ES_SEARCH_HYBRID);
    ASSERT_INT_EQ((long long)r->n, 6);
    for (size_t i = 0; i < r->n; i++) {
      th_set_fail_context("case %zu, hit %zu", c, i);
      ASSERT_STR_EQ(r->hits[i].id, f[i].id);
      ASSERT_INT_EQ(r->hits[i].vector_rank, f[i].vr);
      ASSERT_INT_EQ(r->hits[i].text_rank, f[i].tr);
      ASSERT_DBL_EQ(r->hits[i].score, f[i].score, 1e-12);
    }
    es_results_free(r);
  }
  th_set_fail_context(NULL);
  /* Without a vector there is no hybrid (no embedding provider yet). */
  es_search_params p;
  es_search_params_init(&p);
  p.text = "fox";
  p.mode = ES_SEARCH_HYBRID;
  es_results *r = NULL;
  ASSERT_INT_EQ(es_search(s, &p, &r), ES_EINVAL);
  ASSERT_CONTAINS(es_errmsg(s), "embedding provider");
  p.mode = ES_SEARCH_TEXT;
  p.vector = q;
  p.dim = DIM;
  ASSERT_INT_EQ(es_search(s, &p, &r), ES_EINVAL);
  p.mode = ES_SEARCH_AUTO;
  p.rrf_k = -1;
  ASSERT_INT_EQ(es_search(s, &p, &r), ES_EINVAL);
  es_close(s);
}

TEST(the_text_search_configuration_is_chosen_at_init_and_kept) {
  es_store *s = th_open();
  es_init_options o;
  es_init_options_init(&o);
  o.dim = DIM;
  o.text_config = "simple";
  es_init_report *rep = NULL;
  ASSERT_OK(s, es_init_with(s, &o, &rep));
  ASSERT_STR_EQ(rep->text_config, "simple");
  es_init_report_free(rep);
  put_texts(s);
  /* simple does not stem: "foxes" is only "foxes". */
  es_search_params p;
  es_search_params_init(&p);
  p.text = "foxes";
  es_results *r = NULL;
  ASSERT_OK(s, es_search(s, &p, &r));
  char *got = ids_of(r);
  ASSERT_STR_EQ(got, "t01");
  free(got);
  es_results_free(r);
  /* Another configuration, or none, is refused on this store. */
  o.text_config = "english";
  ASSERT_INT_EQ(es_init_with(s, &o, &rep), ES_ECONFLICT);
  ASSERT_CONTAINS(es_errmsg(s), "--text-config simple, not english");
  o.text_config = NULL;
  o.no_text_search = 1;
  ASSERT_INT_EQ(es_init_with(s, &o, &rep), ES_ECONFLICT);
  o.no_text_search = 0;
  ASSERT_OK(s, es_init_with(s, &o, &rep)); /* NULL keeps its own */
  ASSERT_STR_EQ(rep->text_config, "simple");
  es_init_report_free(rep);
  es_close(s);

  /* A name the server does not know. */
  th_exec("DROP TABLE embeddings, chunks, embstore_meta, embstore_migrations CASCADE");
  s = th_open();
  o.text_config = "klingon";
  ASSERT_INT_EQ(es_init_with(s, &o, &rep), ES_EINVAL);
  ASSERT_CONTAINS(es_errmsg(s), "no text search configuration \"klingon\"");
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM pg_class WHERE relname = 'embeddings'"), 0);
  /* --no-text-search: no index, and text queries say why. */
  o.text_config = NULL;
  o.no_text_search = 1;
  ASSERT_OK(s, es_init_with(s, &o, &rep));
  ASSERT_STR_EQ(rep->text_config, "");
  es_init_report_free(rep);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM pg_indexes WHERE indexname = "
                       "'embeddings_text_idx'"), 0);
  ASSERT_INT_EQ(es_search(s, &p, &r), ES_EINVAL);
  ASSERT_CONTAINS(es_errmsg(s), "no text search");
  es_close(s);
  /* The tool: init --text-config, --json reports it. */
  th_exec("DROP TABLE embeddings, chunks, embstore_meta, embstore_migrations CASCADE");
  const char *argv[] = {"--db", th_conninfo(), "init", "--dim", "4", "--text-config",
                        "simple", "--json", NULL};
  th_proc pr = th_cli(NULL, argv);
  ASSERT_INT_EQ(pr.status, 0);
  ASSERT_CONTAINS(pr.out, "\"text_config\":\"simple\"");
  th_proc_free(&pr);
}

TEST(an_interrupted_text_index_build_is_replaced_by_the_next_migrate) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  put_texts(s);
  /* What an interrupted CREATE INDEX CONCURRENTLY leaves: an invalid
   * index, which the planner never uses. */
  th_exec("UPDATE pg_index SET indisvalid = false WHERE indexrelid = "
          "'embeddings_text_idx'::regclass");
  es_init_report *rep = NULL;
  ASSERT_OK(s, es_migrate_report(s, &rep));
  ASSERT_INT_EQ(rep->indexes_created, 1);
  es_init_report_free(rep);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM pg_index WHERE indexrelid = "
                       "'embeddings_text_idx'::regclass AND indisvalid"), 1);
  /* Dropped by hand: back too, and nothing else changes a second time. */
  th_exec("DROP INDEX embeddings_text_idx");
  ASSERT_OK(s, es_migrate_report(s, &rep));
  ASSERT_INT_EQ(rep->indexes_created, 1);
  es_init_report_free(rep);
  ASSERT_OK(s, es_migrate_report(s, &rep));
  ASSERT_INT_EQ(rep->indexes_created, 0);
  es_init_report_free(rep);
  /* A store from before text search (no text_config column) gets english
   * from migration 7 and its index from the same migrate. */
  th_exec("DROP INDEX embeddings_text_idx");
  th_exec("ALTER TABLE embstore_meta DROP COLUMN text_config");
  th_exec("DELETE FROM embstore_migrations WHERE version = 7");
  es_close(s);
  s = th_open();
  ASSERT_OK(s, es_migrate_report(s, &rep));
  ASSERT_INT_EQ(rep->migrations_applied, 1);
  ASSERT_STR_EQ(rep->text_config, "english");
  es_init_report_free(rep);
  es_search_params p;
  es_search_params_init(&p);
  p.text = "fox";
  es_results *r = NULL;
  ASSERT_OK(s, es_search(s, &p, &r));
  ASSERT(r->n >= 3);
  es_results_free(r);
  es_close(s);
}

typedef struct migrator {
  es_store *s;
  es_status rc;
  int created;
} migrator;

static void *run_migrate(void *arg) {
  migrator *m = arg;
  es_init_report *rep = NULL;
  m->rc = es_migrate_report(m->s, &rep);
  m->created = rep ? rep->indexes_created : -1;
  es_init_report_free(rep);
  return NULL;
}

TEST(the_text_index_of_an_existing_store_builds_while_writes_go_on) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  put_texts(s);
  th_exec("DROP INDEX embeddings_text_idx");
  es_stats *st = NULL;
  ASSERT_OK(s, es_stats_get(s, NULL, &st));
  bool said = false;
  for (size_t i = 0; i < st->n_health_reasons; i++)
    said |= strstr(st->health_reasons[i], "text search index embeddings_text_idx "
                   "is missing") != NULL;
  ASSERT(said);
  es_stats_free(st);
  /* A reader's open snapshot holds the concurrent build in its last wait:
   * the index is in the catalog, not yet valid, and the build shows in
   * pg_stat_progress_create_index. */
  PGconn *holder = th_connect(th_conninfo());
  th_pg_exec(holder, "BEGIN ISOLATION LEVEL REPEATABLE READ");
  th_pg_exec(holder, "SELECT count(*) FROM embeddings");
  migrator m = {th_open(), ES_OK, 0};
  pthread_t t;
  ASSERT_INT_EQ(pthread_create(&t, NULL, run_migrate, &m), 0);
  th_wait_for("SELECT count(*) FROM pg_stat_progress_create_index p JOIN pg_class c "
              "ON c.oid = p.index_relid WHERE c.relname = 'embeddings_text_idx'", 1);
  /* Writers go on meanwhile. */
  float v[DIM] = {1, 2, 3, 4};
  es_doc d = {.id = "during", .text = "written while the fox index builds",
              .embedding = v, .dim = DIM};
  ASSERT_OK(s, es_upsert(s, &d, NULL));
  ASSERT_OK(s, es_stats_get(s, NULL, &st));
  said = false;
  for (size_t i = 0; i < st->n_health_reasons; i++)
    said |= strstr(st->health_reasons[i], "is being built") != NULL;
  ASSERT(said);
  ASSERT_INT_EQ(st->index_health, ES_HEALTH_DEGRADED);
  es_stats_free(st);
  th_pg_exec(holder, "COMMIT");
  PQfinish(holder);
  pthread_join(t, NULL);
  ASSERT_INT_EQ(m.rc, ES_OK);
  ASSERT_INT_EQ(m.created, 1);
  es_close(m.s);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM pg_index WHERE indexrelid = "
                       "'embeddings_text_idx'::regclass AND indisvalid"), 1);
  /* The document written during the build is found through the index. */
  es_search_params p;
  es_search_params_init(&p);
  p.text = "fox";
  p.k = 20;
  es_results *r = NULL;
  ASSERT_OK(s, es_search(s, &p, &r));
  bool found = false;
  for (size_t i = 0; i < r->n; i++)
    found |= strcmp(r->hits[i].id, "during") == 0;
  ASSERT(found);
  es_results_free(r);
  es_close(s);
}

TEST(a_text_longer_than_a_tsvector_holds_is_indexed_by_its_first_characters) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  /* 2.4 MB of distinct tokens: to_tsvector of all of it is over the 1 MB
   * a tsvector may hold, an error that would fail the ingest. */
  size_t n = 300000, cap = n * 9 + 64, len = 0;
  char *text = malloc(cap);
  for (size_t i = 0; i < n; i++)
    len += (size_t)snprintf(text + len, cap - len, "w%06zx ", i);
  float v[DIM] = {1, 0, 0, 0};
  es_doc d = {.id = "long", .text = text, .embedding = v, .dim = DIM};
  ASSERT_OK(s, es_upsert(s, &d, NULL));
  es_search_params p;
  es_search_params_init(&p);
  p.text = "w000010"; /* among the first 200,000 characters */
  es_results *r = NULL;
  ASSERT_OK(s, es_search(s, &p, &r));
  ASSERT_INT_EQ((long long)r->n, 1);
  es_results_free(r);
  p.text = "w03a980"; /* token 240,000: past them */
  ASSERT_OK(s, es_search(s, &p, &r));
  ASSERT_INT_EQ((long long)r->n, 0);
  es_results_free(r);
  ASSERT_INT_EQ(th_int("SELECT length(text) FROM embeddings WHERE id = 'long'"),
                (long long)len); /* stored whole */
  free(text);
  es_close(s);
}

/* A hybrid search runs its two pools on two connections when the pool has
 * a second one free, else in one statement: both give the same hits, in
 * the same order, with the same ranks and scores. */
TEST(hybrid_search_on_one_connection_or_two_gives_the_same_answer) {
  es_store *one = th_open_init(DIM, ES_METRIC_COSINE);
  put_texts(one);
  es_close(one);
  es_options o;
  es_options_init(&o);
  o.conninfo = th_conninfo();
  o.pool_size = 1; /* never a second connection: one statement */
  o.cache_bytes = 0;
  ASSERT_OK(one, es_open_opts(&o, &one));
  o.pool_size = 4;
  es_store *two = NULL;
  ASSERT_OK(two, es_open_opts(&o, &two));
  static const char *const queries[] = {"fox", "dog OR retrieval", "quick -fox",
                                        "\"vector store\"", "clever"};
  static const char *const filters[] = {NULL, "{\"workspace\": \"w1\"}"};
  int split_seen = 0, ties = 0;
  for (size_t q = 0; q < sizeof queries / sizeof queries[0]; q++)
    for (int f = 0; f < 2; f++)
      for (int w = 0; w < 2; w++) {
        th_set_fail_context("query %s, filter %d, weights %d", queries[q], f, w);
        float v[DIM];
        vec((int)q + 3, v);
        es_search_params p;
        es_search_params_init(&p);
        p.vector = v;
        p.dim = DIM;
        p.text = queries[q];
        p.k = 7;
        p.filter_json = filters[f];
        p.weight_vector = w ? 0.3 : 0;
        p.weight_text = w ? 2.0 : 0;
        p.rrf_k = w ? 5 : 0;
        es_results *a = NULL, *b = NULL;
        ASSERT_OK(one, es_search(one, &p, &a));
        ASSERT_OK(two, es_search(two, &p, &b));
        ASSERT_INT_EQ((long long)a->n, (long long)b->n);
        for (size_t i = 0; i < a->n; i++) {
          ASSERT_STR_EQ(a->hits[i].id, b->hits[i].id);
          ASSERT_INT_EQ(a->hits[i].vector_rank, b->hits[i].vector_rank);
          ASSERT_INT_EQ(a->hits[i].text_rank, b->hits[i].text_rank);
          ASSERT_DBL_EQ(a->hits[i].score, b->hits[i].score, 0);
          ties += i > 0 && a->hits[i].score == a->hits[i - 1].score;
          ASSERT_STR_EQ(a->hits[i].text, b->hits[i].text);
          ASSERT_STR_EQ(a->hits[i].metadata_json, b->hits[i].metadata_json);
          if (isnan(a->hits[i].distance))
            ASSERT_NAN(b->hits[i].distance);
          else
            ASSERT_DBL_EQ(a->hits[i].distance, b->hits[i].distance, 0);
        }
        es_results_free(a);
        es_results_free(b);
        es_runtime rt;
        es_runtime_get(two, &rt);
        split_seen = split_seen || rt.pool_open >= 2;
      }
  th_set_fail_context(NULL);
  ASSERT(split_seen); /* the second store did use two connections */
  /* Equal scores: "tie-q" is first by text and second by vector, "tie-p"
   * the other way round; both answers order them by id. */
  float pv[DIM] = {0.9f, -0.7f, 0.5f, 0.3f}, qv[DIM] = {0.9f, -0.7f, 0.5f, 0.31f};
  es_doc ties_docs[2] = {{.id = "tie-q", .text = "zebra zebra zebra", .embedding = qv,
                          .dim = DIM},
                         {.id = "tie-p", .text = "zebra", .embedding = pv, .dim = DIM}};
  es_batch_result_free(th_batch_upsert(two, ties_docs, 2, 10, ES_OK));
  es_search_params p;
  es_search_params_init(&p);
  p.vector = pv;
  p.dim = DIM;
  p.text = "zebra";
  p.k = 3;
  es_results *a = NULL, *b = NULL;
  ASSERT_OK(one, es_search(one, &p, &a));
  ASSERT_OK(two, es_search(two, &p, &b));
  for (es_results *r = a; r; r = r == a ? b : NULL) {
    ASSERT_DBL_EQ(r->hits[0].score, r->hits[1].score, 0);
    ASSERT_STR_EQ(r->hits[0].id, "tie-p");
    ASSERT_STR_EQ(r->hits[1].id, "tie-q");
    ties++;
  }
  es_results_free(a);
  es_results_free(b);
  ASSERT_INT_GT(ties, 0);
  es_runtime rt;
  es_runtime_get(one, &rt);
  ASSERT_INT_EQ(rt.pool_open, 1);
  es_close(one);
  es_close(two);
}
