/* test_recall.c - the HNSW index's recall@10 against an exact scan, on the
 * real embedding sets in ../shared/data (see its README).
 *
 * A recall test must measure the index: the planner answers a table of a
 * few hundred rows with an exact scan, and then the test would compare
 * exact with exact.  So the test database plans without sequential scans
 * where another plan exists (enable_seqscan = off, which leaves the exact
 * search its scan: nothing else can order by "distance + 0"), every
 * approximate search must count as one scan of the HNSW index in
 * pg_stat_user_indexes and every exact one as none, and EXPLAIN of the
 * statement the library last ran must show the index. */
#include <math.h>

#include "test.h"

#define K 10

/* Loads n vectors of dim floats from a raw little-endian float32 file. */
static float *load_f32(const char *path, size_t dim, size_t n) {
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    FAIL("cannot open %s", path);
  float *v = malloc(dim * n * sizeof *v);
  ASSERT_NOT_NULL(v);
  ASSERT_INT_EQ(fread(v, sizeof *v, dim * n, f), dim * n);
  fclose(f);
  return v;
}

/* Loads up to max vectors of dim tab-separated values a line (extra
 * columns, such as SIFT's id, are ignored). */
static float *load_tsv(const char *path, size_t dim, size_t max, size_t *n) {
  FILE *f = fopen(path, "r");
  if (f == NULL)
    FAIL("cannot open %s", path);
  float *v = malloc(dim * max * sizeof *v);
  char *line = NULL;
  size_t cap = 0;
  *n = 0;
  while (*n < max && getline(&line, &cap, f) > 0) {
    char *p = line;
    for (size_t k = 0; k < dim; k++) {
      char *end;
      v[*n * dim + k] = strtof(p, &end);
      if (end == p)
        FAIL("%s: line %zu has fewer than %zu values", path, *n + 1, dim);
      p = end;
    }
    (*n)++;
  }
  free(line);
  fclose(f);
  return v;
}

/* Inserts vectors [0, n) as documents "v<i>". */
static void insert_all(es_store *s, const float *v, size_t dim, size_t n) {
  char id[32];
  for (size_t i = 0; i < n; i++) {
    snprintf(id, sizeof id, "v%zu", i);
    es_doc d = {.id = id, .text = "", .embedding = v + i * dim, .dim = dim};
    ASSERT_OK(s, es_upsert(s, &d, NULL));
  }
}

#define HNSW_SCANS                                                         \
  "SELECT idx_scan FROM pg_stat_user_indexes "                             \
  "WHERE indexrelname = 'embeddings_embedding_hnsw_idx'"

/* Makes the sessions opened from now on in the test's database plan
 * without sequential scans where any other plan exists. */
static void plan_without_seqscans(void) {
  char *db = th_text("SELECT current_database()");
  char sql[200];
  snprintf(sql, sizeof sql, "ALTER DATABASE %s SET enable_seqscan = off", db);
  th_exec(sql);
  free(db);
}

/* The text of the last search the library ran (its pooled sessions stay
 * open and idle, and pg_stat_activity keeps each one's last statement).
 * Freed with free(). */
static char *last_search_statement(void) {
  char *q = th_text("SELECT query FROM pg_stat_activity WHERE datname = "
                    "current_database() AND pid <> pg_backend_pid() AND "
                    "query LIKE 'SELECT id, distance%' "
                    "ORDER BY state_change DESC LIMIT 1");
  if (q == NULL)
    FAIL("no search statement in pg_stat_activity");
  return q;
}

/* The text form of vector v ("[v0,v1,...]"); freed with free(). */
static char *vector_text(const float *v, size_t dim) {
  char *t = malloc(dim * 20 + 3), *p = t;
  ASSERT_NOT_NULL(t);
  *p++ = '[';
  for (size_t i = 0; i < dim; i++)
    p += sprintf(p, "%s%.9g", i ? "," : "", (double)v[i]);
  strcpy(p, "]");
  return t;
}

/* Fails unless the plan of the library's last search statement, for the
 * query vector q, scans the HNSW index. */
static void assert_the_index_answers(const float *q, size_t dim) {
  char *sql = last_search_statement();
  PGconn *pg = th_connect(th_conninfo());
  th_pg_exec(pg, "SET enable_seqscan = off");
  size_t cap = strlen(sql) + 16;
  char *prepare = malloc(cap);
  ASSERT_NOT_NULL(prepare);
  snprintf(prepare, cap, "PREPARE s AS %s", sql);
  th_pg_exec(pg, prepare);
  /* $1 is the vector, the last parameter the limit (no filter here);
   * EXPLAIN takes no bound parameters, so they are literals. */
  char *vec = vector_text(q, dim);
  size_t xcap = strlen(vec) + 64;
  char *explain = malloc(xcap);
  ASSERT_NOT_NULL(explain);
  snprintf(explain, xcap, "EXPLAIN (COSTS OFF) EXECUTE s('%s', %d)", vec, K);
  PGresult *r = PQexec(pg, explain);
  if (PQresultStatus(r) != PGRES_TUPLES_OK)
    FAIL("EXPLAIN %s: %s", sql, PQresultErrorMessage(r));
  char plan[8192] = "";
  for (int i = 0; i < PQntuples(r); i++)
    snprintf(plan + strlen(plan), sizeof plan - strlen(plan), "%s\n",
             PQgetvalue(r, i, 0));
  ASSERT_CONTAINS(plan, "Index Scan using embeddings_embedding_hnsw_idx");
  PQclear(r);
  free(explain);
  free(vec);
  free(prepare);
  free(sql);
  PQfinish(pg);
}

/* Mean recall@K of the index over the queries, against exact scans.  The
 * approximate searches must each have scanned the HNSW index once, the
 * exact ones never. */
static double recall(es_store *s, const float *q, size_t dim, size_t nq) {
  long long scans = th_int(HNSW_SCANS);
  size_t found = 0;
  for (size_t i = 0; i < nq; i++) {
    es_search_params p = {.vector = q + i * dim, .dim = dim, .k = K};
    es_results *approx = NULL, *exact = NULL;
    ASSERT_OK(s, es_search(s, &p, &approx));
    p.exact = 1;
    ASSERT_OK(s, es_search(s, &p, &exact));
    ASSERT_INT_EQ(exact->n, K);
    for (size_t a = 0; a < approx->n; a++)
      for (size_t e = 0; e < exact->n; e++)
        if (strcmp(approx->hits[a].id, exact->hits[e].id) == 0) {
          found++;
          break;
        }
    es_results_free(approx);
    es_results_free(exact);
  }
  /* The server counts the scans when the library's session goes idle. */
  th_wait_for(HNSW_SCANS, scans + (long long)nq);
  /* One approximate search more (another k: the cache has the others),
   * then its plan. */
  es_search_params p = {.vector = q, .dim = dim, .k = K - 1};
  es_results *last = NULL;
  ASSERT_OK(s, es_search(s, &p, &last));
  es_results_free(last);
  assert_the_index_answers(q, dim);
  return (double)found / (double)(nq * K);
}

TEST(hnsw_recall_at_10_is_at_least_0_95_on_bge_m3_cosine) {
  const size_t dim = 1024, n = 500, nq = 50;
  float *v = load_f32(th_data("bge-m3-1024-paragraph-500.f32"), dim, n);
  plan_without_seqscans();
  es_store *s = th_open_init((int)dim, ES_METRIC_COSINE);
  /* The last 50 vectors are held out as queries. */
  insert_all(s, v, dim, n - nq);
  th_exec("ANALYZE embeddings");
  double r = recall(s, v + (n - nq) * dim, dim, nq);
  printf("bge-m3 cosine recall@10 = %.4f over %zu queries\n", r, nq);
  ASSERT_DBL_GE(r, 0.95);
  free(v);
  es_close(s);
}

TEST(hnsw_recall_at_10_is_at_least_0_95_on_sift_l2) {
  const size_t dim = 128, held = 97;
  size_t n, nq3;
  float *v = load_tsv(th_data("sift-5k-128.tsv"), dim, 5000, &n);
  ASSERT_INT_EQ(n, 5000);
  float *q3 = load_tsv(th_data("sift-query-3.tsv"), dim, 3, &nq3);
  ASSERT_INT_EQ(nq3, 3);
  plan_without_seqscans();
  es_store *s = th_open_init((int)dim, ES_METRIC_L2);
  insert_all(s, v, dim, n - held);
  th_exec("ANALYZE embeddings");
  /* The three official queries plus 97 held-out base vectors. */
  float *q = malloc((held + 3) * dim * sizeof *q);
  memcpy(q, q3, 3 * dim * sizeof *q);
  memcpy(q + 3 * dim, v + (n - held) * dim, held * dim * sizeof *q);
  double r = recall(s, q, dim, held + 3);
  printf("SIFT l2 recall@10 = %.4f over %zu queries\n", r, held + 3);
  ASSERT_DBL_GE(r, 0.95);
  free(q);
  free(q3);
  free(v);
  es_close(s);
}
