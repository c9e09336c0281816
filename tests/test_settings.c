/* test_settings.c - nothing depends on session settings or the host's
 * locale: time zones, date styles, float digits, client encodings and a
 * comma as the decimal point change no result and corrupt no text. */
#define _GNU_SOURCE
#include <locale.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "test.h"

/* Server-side settings a DBA may give a database, all unusual. */
static void odd_database_settings(void) {
  char *db = th_text("SELECT current_database()");
  char sql[512];
  snprintf(sql, sizeof sql,
           "ALTER DATABASE %s SET timezone = 'Asia/Kolkata'; "
           "ALTER DATABASE %s SET datestyle = 'Postgres, MDY'; "
           "ALTER DATABASE %s SET intervalstyle = 'sql_standard'; "
           "ALTER DATABASE %s SET extra_float_digits = -15",
           db, db, db, db);
  th_exec(sql);
  free(db);
}

/* A document without a vector, created age_s seconds ago. */
static void doc_without_vector(const char *id, int age_s) {
  char sql[256];
  snprintf(sql, sizeof sql,
           "INSERT INTO embeddings (id, text, created_at) VALUES ('%s', 'x', "
           "now() - make_interval(secs => %d))", id, age_s);
  th_exec(sql);
}

/* Cleanup with the default grace period must keep what is young. */
static void cleanup_keeps_young(es_store *s, const char *young, const char *old) {
  es_cleanup_result *r = NULL;
  es_cleanup_options o;
  es_cleanup_options_init(&o);
  ASSERT_OK(s, es_cleanup_orphaned(s, &o, &r));
  ASSERT_INT_EQ(r->orphaned_embeddings, 1);
  es_cleanup_result_free(r);
  char sql[128];
  snprintf(sql, sizeof sql, "SELECT count(*) FROM embeddings WHERE id = '%s'", young);
  ASSERT_INT_EQ(th_int(sql), 1);
  snprintf(sql, sizeof sql, "SELECT count(*) FROM embeddings WHERE id = '%s'", old);
  ASSERT_INT_EQ(th_int(sql), 0);
}

TEST(cleanup_keeps_new_documents_whatever_the_time_zone_and_date_style) {
  es_store *s = th_open_init(2, ES_METRIC_COSINE);
  es_close(s);
  odd_database_settings();
  doc_without_vector("young-1", 5);
  doc_without_vector("old-1", 7200);
  s = th_open(); /* new connections: the database's settings apply */
  cleanup_keeps_young(s, "young-1", "old-1");
  es_close(s);

  /* The same from the client's environment, which libpq sends after the
   * connection's own options. */
  setenv("PGTZ", "Asia/Shanghai", 1);
  setenv("PGDATESTYLE", "Postgres", 1);
  doc_without_vector("young-2", 5);
  doc_without_vector("old-2", 7200);
  s = th_open();
  cleanup_keeps_young(s, "young-2", "old-2");

  /* Metrics are stamped with the time they were recorded, whatever the
   * session's zone: within a minute of the server's clock. */
  es_stats *st = NULL;
  ASSERT_OK(s, es_stats_get(s, NULL, &st));
  es_stats_free(st);
  ASSERT(th_int("SELECT count(*) FROM performance_metrics") > 0);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM performance_metrics WHERE "
                       "abs(extract(epoch FROM created_at - now())) > 60"), 0);
  es_close(s);
  unsetenv("PGTZ");
  unsetenv("PGDATESTYLE");
}

TEST(search_distances_are_exact_whatever_extra_float_digits_says) {
  es_store *s = th_open_init(2, ES_METRIC_L2);
  float a[2] = {0, 0}, b[2] = {1, 1};
  es_doc d = {.id = "a", .embedding = a, .dim = 2};
  ASSERT_OK(s, es_upsert(s, &d, NULL));
  es_close(s);
  odd_database_settings();
  s = th_open();
  es_search_params p = {.vector = b, .dim = 2, .k = 1, .exact = 1};
  es_results *r = NULL;
  ASSERT_OK(s, es_search(s, &p, &r));
  ASSERT_INT_EQ(r->n, 1);
  /* sqrt(2) in float4 arithmetic, as pgvector computes it. */
  double want = (double)sqrtf(2.0f);
  if (fabs(r->hits[0].distance - want) > 1e-7)
    FAIL("distance %.17g, want %.17g", r->hits[0].distance, want);
  es_results_free(r);
  es_close(s);
}

/* Reads the test database's value of sql on a connection that speaks UTF-8
 * whatever the environment says. */
static char *utf8_text(const char *sql) {
  char ci[1200];
  snprintf(ci, sizeof ci, "%s client_encoding=UTF8", th_conninfo());
  PGconn *pg = PQconnectdb(ci);
  if (PQstatus(pg) != CONNECTION_OK)
    FAIL("connect: %s", PQerrorMessage(pg));
  PGresult *r = PQexec(pg, sql);
  if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
    FAIL("%s: %s", sql, PQerrorMessage(pg));
  char *v = strdup(PQgetvalue(r, 0, 0));
  PQclear(r);
  PQfinish(pg);
  return v;
}

TEST(no_client_encoding_setting_can_corrupt_stored_text) {
  es_store *s = th_open_init(2, ES_METRIC_COSINE);
  es_close(s);
  /* The environment asks for LATIN1: the CLI must still send UTF-8. */
  setenv("PGCLIENTENCODING", "LATIN1", 1);
  const char *in = "{\"id\":\"h\",\"text\":\"h\xc3\xa9llo \xe6\x97\xa5\","
                   "\"embedding\":[1,0]}\n";
  const char *ingest[] = {"--db", th_conninfo(), "--json", "ingest", "-", NULL};
  th_proc p = th_cli(in, ingest);
  ASSERT_INT_EQ(p.status, 0);
  th_proc_free(&p);
  char *t = utf8_text("SELECT text FROM embeddings WHERE id = 'h'");
  ASSERT_STR_EQ(t, "h\xc3\xa9llo \xe6\x97\xa5");
  free(t);
  /* And reads come back as UTF-8 too. */
  const char *search[] = {"--db", th_conninfo(), "--json", "search", "--like",
                          "h", NULL};
  th_exec("INSERT INTO embeddings (id, text, embedding) VALUES "
          "('n', 'near', '[1,0.1]')");
  p = th_cli(NULL, search);
  ASSERT_INT_EQ(p.status, 0);
  ASSERT_CONTAINS(p.out, "\"id\":\"n\"");
  th_proc_free(&p);
  const char *like_n[] = {"--db", th_conninfo(), "--json", "search", "--like",
                          "n", NULL};
  p = th_cli(NULL, like_n);
  ASSERT_INT_EQ(p.status, 0);
  ASSERT_CONTAINS(p.out, "\"text\":\"h\xc3\xa9llo \xe6\x97\xa5\"");
  th_proc_free(&p);
  unsetenv("PGCLIENTENCODING");

  /* A connection string that names another encoding does not win either. */
  char ci[1200];
  snprintf(ci, sizeof ci, "%s client_encoding=LATIN1", th_conninfo());
  ASSERT_OK(s, es_open(ci, &s));
  float v[2] = {0, 1};
  es_doc d = {.id = "k", .text = "\xc3\xbc" "n\xc3\xaf" "code", .embedding = v, .dim = 2};
  ASSERT_OK(s, es_upsert(s, &d, NULL));
  es_search_params q = {.like_id = "n", .k = 3};
  es_results *r = NULL;
  ASSERT_OK(s, es_search(s, &q, &r));
  bool seen = false;
  for (size_t i = 0; i < r->n; i++)
    if (strcmp(r->hits[i].id, "h") == 0) {
      ASSERT_STR_EQ(r->hits[i].text, "h\xc3\xa9llo \xe6\x97\xa5");
      seen = true;
    }
  ASSERT(seen);
  es_results_free(r);
  es_close(s);
  t = utf8_text("SELECT text FROM embeddings WHERE id = 'k'");
  ASSERT_STR_EQ(t, "\xc3\xbc" "n\xc3\xaf" "code");
  free(t);
}

TEST(init_refuses_a_database_that_does_not_store_utf8) {
  char *db = th_text("SELECT current_database()");
  char sql[300];
  snprintf(sql, sizeof sql, "CREATE DATABASE %s_latin1 ENCODING 'LATIN1' "
           "LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0", db);
  th_exec(sql);
  char ci[1200];
  snprintf(ci, sizeof ci, "%s dbname=%s_latin1", th_conninfo(), db);
  es_store *s = NULL;
  ASSERT_OK(s, es_open(ci, &s));
  ASSERT_STATUS(s, es_init(s, 2, ES_METRIC_COSINE, NULL), ES_ECONFLICT);
  ASSERT_CONTAINS(es_errmsg(s), "LATIN1");
  ASSERT_CONTAINS(es_errmsg(s), "UTF8");
  es_close(s);
  /* Nothing was created there. */
  PGconn *pg = PQconnectdb(ci);
  PGresult *r = PQexec(pg, "SELECT count(*) FROM pg_class WHERE relname IN "
                           "('embeddings', 'embstore_meta', 'embstore_migrations')");
  ASSERT_STR_EQ(PQgetvalue(r, 0, 0), "0");
  PQclear(r);
  PQfinish(pg);
  snprintf(sql, sizeof sql, "DROP DATABASE %s_latin1", db);
  th_exec(sql);
  free(db);
}

/* Builds de_DE.UTF-8 (decimal comma) into the test's directory and makes
 * it the process's LC_NUMERIC. */
static void use_a_decimal_comma_locale(void) {
  char dir[700], cmd[1600];
  snprintf(dir, sizeof dir, "%s/locale", th_tmpdir());
  mkdir(dir, 0755);
  snprintf(cmd, sizeof cmd, "localedef -i de_DE -f UTF-8 '%s/de_DE.UTF-8' "
           ">/dev/null 2>&1", dir);
  if (system(cmd) != 0)
    FAIL("localedef could not build de_DE.UTF-8 (Debian package locales: "
         "run scripts/setup)");
  setenv("LOCPATH", dir, 1);
  if (setlocale(LC_NUMERIC, "de_DE.UTF-8") == NULL)
    FAIL("setlocale(LC_NUMERIC, de_DE.UTF-8) failed");
  char buf[16];
  snprintf(buf, sizeof buf, "%.1f", 0.5);
  ASSERT_STR_EQ(buf, "0,5"); /* the locale is in effect */
}

TEST(numbers_read_and_write_the_same_under_a_decimal_comma_locale) {
  use_a_decimal_comma_locale();
  /* Codecs and the JSON reader (a 20-digit number takes the slow path). */
  float v[2] = {0.5f, -1.25f};
  char *text = es__vector_to_text(v, 2);
  ASSERT_STR_EQ(text, "[0.5,-1.25]");
  free(text);
  float back[2];
  ASSERT_INT_EQ(es__vector_from_text("[0.5,-1.25]", back, 2), 2);
  ASSERT(back[0] == 0.5f && back[1] == -1.25f);
  const char *json = "{\"id\":\"x\",\"embedding\":[0.50000000000000000001,2.5]}";
  es_doc_json *d = NULL;
  char err[256];
  ASSERT_INT_EQ(es_doc_json_parse(json, strlen(json), &d, err, sizeof err), ES_OK);
  ASSERT(es_doc_json_doc(d)->embedding[0] == 0.5f);
  ASSERT(es_doc_json_doc(d)->embedding[1] == 2.5f);
  es_doc_json_free(d);

  /* Through the database: distances read back, metrics written. */
  es_store *s = th_open_init(2, ES_METRIC_L2);
  float a[2] = {0, 0}, q[2] = {0.5f, 0};
  es_doc doc = {.id = "a", .embedding = a, .dim = 2};
  ASSERT_OK(s, es_upsert(s, &doc, NULL));
  es_search_params p = {.vector = q, .dim = 2, .k = 1, .exact = 1};
  es_results *r = NULL;
  ASSERT_OK(s, es_search(s, &p, &r));
  ASSERT(r->n == 1 && r->hits[0].distance == 0.5);
  es_results_free(r);
  es_metrics_report *m = NULL;
  ASSERT_OK(s, es_metrics_report_get(s, 0, &m));
  bool upserts = false;
  for (size_t i = 0; i < m->n; i++)
    if (strcmp(m->ops[i].operation, "upsert") == 0) {
      upserts = m->ops[i].count == 1 && m->ops[i].p50_ms > 0;
    }
  ASSERT(upserts);
  es_metrics_report_free(m);
  es_close(s);
}
