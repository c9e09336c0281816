/* test_api.c - the public API's contract: per-thread errors on many
 * stores, ownership of results, and the helpers the tool and the servers
 * use instead of the library's internals. */
#include <dirent.h>
#include <pthread.h>

#include "test.h"

/* A store handle whose es_open failed at once without a server: an
 * unreachable socket directory of its own (named after i), no retries.
 * es_open still hands out the handle, which must be closed. */
static es_store *open_unreachable(int i) {
  char ci[128];
  snprintf(ci, sizeof ci, "host=/nonexistent-es-api-%04d port=1 dbname=x", i);
  es_options o;
  es_options_init(&o);
  o.conninfo = ci;
  o.max_retries = 0;
  o.pool_size = 1;
  es_store *s = NULL;
  ASSERT_STATUS(s, es_open_opts(&o, &s), ES_ECONNECT);
  if (s == NULL)
    FAIL("store %d: es_open_opts handed out no handle", i);
  return s;
}

/* The message names the store's own socket directory. */
static void assert_own_error(es_store *s, int i) {
  char want[64];
  snprintf(want, sizeof want, "/nonexistent-es-api-%04d", i);
  ASSERT_CONTAINS(es_errmsg(s), want);
}

TEST(two_thousand_stores_open_at_once_keep_each_its_own_error) {
  enum { N = 2000 };
  es_store **s = calloc(N, sizeof *s);
  ASSERT_NOT_NULL(s);
  for (int i = 0; i < N; i++)
    s[i] = open_unreachable(i);
  /* Every handle still explains its own failure, also the first ones. */
  for (int i = 0; i < N; i++)
    assert_own_error(s[i], i);
  for (int i = 0; i < N; i++)
    es_close(s[i]);
  /* And again: nothing of the closed ones is in the way. */
  for (int i = 0; i < N / 10; i++)
    s[i] = open_unreachable(N + i);
  for (int i = N / 10 - 1; i >= 0; i--) {
    assert_own_error(s[i], N + i);
    es_close(s[i]);
  }
  free(s);
}

/* What the main thread and the worker hand each other. */
typedef struct outliver {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int step;         /* 1: the worker recorded its error on a; 2: a is closed */
  es_store *a, *b;  /* b: opened after a was closed */
  char msg_a[1024]; /* the worker's message on a */
  char msg_b_before[1024], msg_b_after[1024];
} outliver;

static void wait_step(outliver *o, int step) {
  pthread_mutex_lock(&o->mu);
  while (o->step < step)
    pthread_cond_wait(&o->cv, &o->mu);
  pthread_mutex_unlock(&o->mu);
}

static void set_step(outliver *o, int step) {
  pthread_mutex_lock(&o->mu);
  o->step = step;
  pthread_cond_broadcast(&o->cv);
  pthread_mutex_unlock(&o->mu);
}

/* Records an error on a, waits until a is closed and b opened, then looks
 * at b: its own last failure on b is none until it fails on b. */
static void *outlive(void *arg) {
  outliver *o = arg;
  es_store_shape(o->a, NULL, NULL); /* fails: nothing listens */
  snprintf(o->msg_a, sizeof o->msg_a, "%s", es_errmsg(o->a));
  set_step(o, 1);
  wait_step(o, 2);
  snprintf(o->msg_b_before, sizeof o->msg_b_before, "%s", es_errmsg(o->b));
  es_store_shape(o->b, NULL, NULL);
  snprintf(o->msg_b_after, sizeof o->msg_b_after, "%s", es_errmsg(o->b));
  return NULL;
}

/* Under Valgrind (the CI's unit run) or LeakSanitizer: the worker's
 * record on the closed store is freed when the worker exits. */
TEST(a_thread_that_outlives_its_store_leaks_nothing_and_sees_no_stale_error) {
  outliver o = {.step = 0};
  pthread_mutex_init(&o.mu, NULL);
  pthread_cond_init(&o.cv, NULL);
  o.a = open_unreachable(1);
  pthread_t t;
  ASSERT_INT_EQ(pthread_create(&t, NULL, outlive, &o), 0);
  wait_step(&o, 1);
  es_close(o.a); /* the worker is alive and holds a record on a */
  /* Often at a's address: a record kept by address would show a's error. */
  o.b = open_unreachable(2);
  set_step(&o, 2);
  ASSERT_INT_EQ(pthread_join(t, NULL), 0);
  ASSERT_CONTAINS(o.msg_a, "/nonexistent-es-api-0001");
  ASSERT_STR_EQ(o.msg_b_before, "no error");
  ASSERT_CONTAINS(o.msg_b_after, "/nonexistent-es-api-0002");
  assert_own_error(o.b, 2); /* the main thread's own failure on b */
  es_close(o.b);
  pthread_cond_destroy(&o.cv);
  pthread_mutex_destroy(&o.mu);
}

/* Parses json as a vector named name; fails the test unless it returns
 * want.  Returns the message (static). */
static const char *parse_vector(const char *json, size_t len, const char *name,
                                es_status want, float **v, size_t *dim) {
  static char err[256];
  es_status rc = es_vector_parse_json(json, len, name, v, dim, err, sizeof err);
  if (rc != want)
    FAIL("es_vector_parse_json(%s): want %s, got %s (%s)", json,
         es_status_name(want), es_status_name(rc), err);
  if (rc != ES_OK && *v != NULL)
    FAIL("es_vector_parse_json(%s) failed but handed out a vector", json);
  return err;
}

TEST(vector_parse_json_reads_like_the_ingest_format_and_names_the_element) {
  float *v = NULL;
  size_t dim = 0;
  const char *good = "[1, 0.1, -2.5e-3, 3.4028235e38]trailing bytes not given";
  parse_vector(good, strlen("[1, 0.1, -2.5e-3, 3.4028235e38]"), "--vector",
               ES_OK, &v, &dim);
  ASSERT_INT_EQ(dim, 4);
  /* The same floats as the ingest format's "embedding" of the same text. */
  const char *doc = "{\"id\":\"a\",\"embedding\":[1, 0.1, -2.5e-3, 3.4028235e38]}";
  es_doc_json *d = NULL;
  char err[256];
  ASSERT_INT_EQ(es_doc_json_parse(doc, strlen(doc), &d, err, sizeof err), ES_OK);
  const es_doc *ed = es_doc_json_doc(d);
  ASSERT_INT_EQ(ed->dim, 4);
  ASSERT_INT_EQ(memcmp(ed->embedding, v, 4 * sizeof *v), 0);
  es_doc_json_free(d);
  es_vector_free(v);
  es_vector_free(NULL); /* harmless */

  struct {
    const char *json, *name, *want;
  } bad[] = {
      {"[1,x]", "--vector", "--vector[1]: expected a number (at byte 4)"},
      {"[1,2,1e]", "vector", "vector[2]: malformed number"},
      {"[]", "--vector", "--vector: the vector is empty"},
      {"[1] [2]", "--vector", "--vector: trailing characters after the array"},
      {"{\"a\":1}", NULL, "vector: expected an array of numbers"},
      {"[1,NaN]", NULL, "vector[1]: NaN and Infinity are not JSON numbers"},
      {"", NULL, "vector: expected an array of numbers"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    const char *msg = parse_vector(bad[i].json, strlen(bad[i].json), bad[i].name,
                                   ES_EINVAL, &v, &dim);
    ASSERT_CONTAINS(msg, bad[i].want);
  }
  /* err may be NULL: the status alone. */
  ASSERT_INT_EQ(es_vector_parse_json("[x]", 3, NULL, &v, &dim, NULL, 0), ES_EINVAL);
  ASSERT_NULL(v);
}

/* The tool reads --vector with the public parser: one prefix, the element
 * named. */
TEST(cli_search_names_the_bad_element_of_vector_once) {
  const char *argv[] = {"search", "--vector", "[1,x]", NULL};
  th_proc p = th_cli(NULL, argv);
  ASSERT_INT_EQ(p.status, 1);
  ASSERT_CONTAINS(p.err, "embstore search: --vector[1]: expected a number");
  ASSERT_NOT_CONTAINS(p.err, "--vector: --vector");
  th_proc_free(&p);
}

/* Reads a whole file (malloc'd), or NULL. */
static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
    free(s);
    s = NULL;
  }
  if (s)
    s[n] = '\0';
  fclose(f);
  return s;
}

/* Fails when file (in dir) names a library internal: an es__ symbol other
 * than the UTF-8 helpers the tool compiles in (cli/tool_utf8.h), or a
 * header of src/ other than utf8.h. */
static void assert_public_only(const char *dir, const char *file) {
  char path[600];
  snprintf(path, sizeof path, "%s/../%s/%s", EMBSTORE_FUZZ_DIR, dir, file);
  char *s = slurp(path);
  if (s == NULL)
    FAIL("cannot read %s", path);
  for (const char *p = s; (p = strstr(p, "es__")) != NULL; p += 4)
    if (strncmp(p, "es__utf8_invalid_at", 19) != 0 &&
        strncmp(p, "es__utf8_scrub", 14) != 0)
      FAIL("%s/%s uses the library's internal %.30s", dir, file, p);
  for (const char *p = s; (p = strstr(p, "#include \"")) != NULL; p += 10)
    if (strncmp(p + 10, "../", 3) == 0 && strncmp(p + 10, "../src/utf8.h\"", 14) != 0)
      FAIL("%s/%s includes %.40s", dir, file, p + 10);
  free(s);
}

/* Checks every .c and .h file of dir (beside the source tree's fuzz/);
 * returns how many; 0 when the directory is not there. */
static int assert_dir_public_only(const char *dir) {
  char path[600];
  snprintf(path, sizeof path, "%s/../%s", EMBSTORE_FUZZ_DIR, dir);
  DIR *d = opendir(path);
  int n = 0;
  if (d == NULL)
    return 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    size_t len = strlen(e->d_name);
    if (len > 2 && e->d_name[len - 2] == '.' &&
        (e->d_name[len - 1] == 'c' || e->d_name[len - 1] == 'h')) {
      assert_public_only(dir, e->d_name);
      n++;
    }
  }
  closedir(d);
  return n;
}

TEST(the_tool_and_the_benchmarks_use_only_the_public_header) {
  /* Every file of the tool, the server and the benchmarks, whatever is
   * added later. */
  ASSERT(assert_dir_public_only("cli") >= 15);
  ASSERT(assert_dir_public_only("bench") >= 8);
  assert_dir_public_only("server");
}

/* A pointer no call hands out: a result left at it was not reset. */
#define UNSET ((void *)&unset_marker)
static char unset_marker;

/* Every call that hands out a result, failing on store s: each must leave
 * its [out] result NULL. */
static void assert_failures_hand_out_nothing(es_store *s) {
  es_init_report *ir = UNSET;
  ASSERT_INT_NE(es_init(s, 3, ES_METRIC_COSINE, &ir), ES_OK);
  ASSERT_NULL(ir);
  ir = UNSET;
  ASSERT_INT_NE(es_migrate_report(s, &ir), ES_OK);
  ASSERT_NULL(ir);
  es_migration_list *ml = UNSET;
  ASSERT_INT_NE(es_migration_list_get(s, &ml), ES_OK);
  ASSERT_NULL(ml);
  es_delete_result *dr = UNSET;
  ASSERT_INT_NE(es_delete_by_source(s, "src", NULL, &dr), ES_OK);
  ASSERT_NULL(dr);
  dr = UNSET;
  const char *ids[] = {"a"};
  ASSERT_INT_NE(es_delete_documents(s, ids, 1, NULL, &dr), ES_OK);
  ASSERT_NULL(dr);
  es_document *doc = UNSET;
  ASSERT_INT_NE(es_get_document(s, "a", NULL, &doc), ES_OK);
  ASSERT_NULL(doc);
  es_stats *st = UNSET;
  ASSERT_INT_NE(es_stats_get(s, NULL, &st), ES_OK);
  ASSERT_NULL(st);
  es_count_check *cc = UNSET;
  ASSERT_INT_NE(es_check_counts(s, 0, &cc), ES_OK);
  ASSERT_NULL(cc);
  es_cleanup_result *cr = UNSET; /* set on failure too: what was done */
  ASSERT_INT_NE(es_cleanup_orphaned(s, NULL, &cr), ES_OK);
  ASSERT_INT_NE((intptr_t)cr, (intptr_t)UNSET);
  if (s == NULL)
    ASSERT_NULL(cr);
  if (cr != NULL)
    ASSERT_INT_EQ(cr->cleaned, 0);
  es_cleanup_result_free(cr);
  es_metrics_report *mr = UNSET;
  ASSERT_INT_NE(es_metrics_report_get(s, 0, &mr), ES_OK);
  ASSERT_NULL(mr);
}

TEST(failed_calls_hand_out_no_result_and_every_free_takes_null) {
  es_store *s = open_unreachable(7);
  assert_failures_hand_out_nothing(s);
  es_close(s);
  assert_failures_hand_out_nothing(NULL);

  es_doc_json *dj = UNSET;
  char err[64];
  ASSERT_INT_EQ(es_doc_json_parse("[]", 2, &dj, err, sizeof err), ES_EINVAL);
  ASSERT_NULL(dj);
  float *v = UNSET;
  size_t dim = 1;
  ASSERT_INT_EQ(es_vector_parse_json("[", 1, NULL, &v, &dim, err, sizeof err),
                ES_EINVAL);
  ASSERT_NULL(v);

  /* Freeing NULL is a harmless no-op, for every type. */
  es_init_report_free(NULL);
  es_migration_list_free(NULL);
  es_delete_result_free(NULL);
  es_document_free(NULL);
  es_results_free(NULL);
  es_stats_free(NULL);
  es_count_check_free(NULL);
  es_cleanup_result_free(NULL);
  es_metrics_report_free(NULL);
  es_batch_result_free(NULL);
  es_doc_json_free(NULL);
  es_vector_free(NULL);
  ASSERT_INT_EQ(es_batch_end(NULL, NULL), ES_OK);
  es_close(NULL);
  es_cluster_close(NULL);
}

TEST(options_init_functions_fill_every_field_with_its_default) {
  es_search_params p;
  memset(&p, 0xAB, sizeof p);
  es_search_params_init(&p);
  ASSERT_NULL(p.vector);
  ASSERT_NULL(p.like_id);
  ASSERT_NULL(p.workspace);
  ASSERT_NULL(p.source_id);
  ASSERT_INT_EQ(p.dim, 0);
  ASSERT_INT_EQ(p.k, 10);
  ASSERT_INT_EQ(p.exact, 0);
  es_delete_options d;
  memset(&d, 0xAB, sizeof d);
  es_delete_options_init(&d);
  ASSERT_NULL(d.workspace);
  ASSERT_INT_EQ(d.no_cascade, 0);
  ASSERT_INT_EQ(d.dry_run, 0);
  ASSERT_NULL(d.workspaces);
  ASSERT_INT_EQ(d.n_workspaces, 0);
  es_get_options g;
  memset(&g, 0xAB, sizeof g);
  es_get_options_init(&g);
  ASSERT_INT_EQ(g.include_embedding, 0);
  ASSERT_NULL(g.workspaces);
  ASSERT_INT_EQ(g.n_workspaces, 0);
  es_cleanup_options c;
  memset(&c, 0xAB, sizeof c);
  es_cleanup_options_init(&c);
  ASSERT_INT_EQ(c.dry_run, 0);
  ASSERT_INT_EQ(c.batch_size, 1000);
  ASSERT_INT_EQ(c.min_age_s, 3600);
  es_batch_options b;
  memset(&b, 0xAB, sizeof b);
  es_batch_options_init(&b);
  ASSERT_INT_EQ(b.batch_size, 1000);
  ASSERT_NULL(b.progress);
  ASSERT_NULL(b.user);
  ASSERT_INT_EQ(b.total, 0);
  ASSERT_INT_EQ(b.defer_index, ES_DEFER_AUTO);
  es_options o;
  memset(&o, 0xAB, sizeof o);
  es_options_init(&o);
  ASSERT_NULL(o.conninfo);
  ASSERT_NULL(o.home);
  ASSERT_INT_EQ(o.pool_size, 20);
  ASSERT_INT_EQ(o.idle_timeout_ms, 30000);
  ASSERT_INT_EQ(o.cache_bytes, 64 << 20);
}
