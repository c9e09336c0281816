/* test_cli.c - the embstore tool: exit codes, --json fields, messages.
 * JSON output is read back with jansson, an independent parser. */
#include <fcntl.h>
#include <jansson.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

/* Runs embstore --db <test db> args... */
static th_proc cli_db(const char *in, const char *const *args) {
  const char *argv[32] = {"--db", th_conninfo()};
  size_t n = 2;
  for (size_t i = 0; args[i] && n < 31; i++)
    argv[n++] = args[i];
  argv[n] = NULL;
  return th_cli(in, argv);
}
#define CLI(in, ...) cli_db(in, (const char *const[]){__VA_ARGS__, NULL})

static json_t *parse(const char *text) {
  json_error_t e;
  json_t *j = json_loads(text, 0, &e);
  if (j == NULL)
    FAIL("not JSON (%s): %s", e.text, text);
  return j;
}

/* Asserts that object o has exactly the given keys. */
static void assert_keys(json_t *o, const char *const *keys, size_t n) {
  ASSERT(json_is_object(o));
  ASSERT_INT_EQ(json_object_size(o), n);
  for (size_t i = 0; i < n; i++)
    if (json_object_get(o, keys[i]) == NULL)
      FAIL("missing key \"%s\" in %s", keys[i], json_dumps(o, 0));
}

TEST(cli_help_and_usage_errors_exit_1) {
  const char *help[] = {"--help", NULL};
  th_proc p = th_cli(NULL, help);
  ASSERT_INT_EQ(p.status, 0);
  const char *cmds[] = {"db", "init", "migrate", "ingest", "search"};
  for (int i = 0; i < 5; i++)
    ASSERT_CONTAINS(p.out, cmds[i]);
  th_proc_free(&p);

  const char *sub[] = {"search", "--help", NULL};
  p = th_cli(NULL, sub);
  ASSERT_INT_EQ(p.status, 0);
  ASSERT_CONTAINS(p.out, "--workspace");
  th_proc_free(&p);

  const char *bad[][4] = {{"frobnicate", NULL},
                          {"init", NULL},
                          {"init", "--dim", "0", NULL},
                          {"init", "--dim", "3", "--metric"},
                          {"search", "-k", "5", NULL},
                          {"search", "--like", "x", "--bogus"},
                          {"ingest", NULL},
                          {"db", "restart", NULL}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    p = th_cli(NULL, bad[i]);
    if (p.status != 1)
      FAIL("%s %s: exit %d, want 1\n%s", bad[i][0], bad[i][1] ? bad[i][1] : "",
           p.status, p.err);
    ASSERT_CONTAINS(p.err, "embstore");
    th_proc_free(&p);
  }
}

TEST(cli_operational_errors_exit_2_without_secrets) {
  const char *argv[] = {"--db", "host=/nonexistent port=1 user=u password=pw-secret-9",
                        "--json", "init", "--dim", "3", NULL};
  th_proc p = th_cli(NULL, argv);
  ASSERT_INT_EQ(p.status, 2);
  ASSERT_NOT_CONTAINS(p.err, "pw-secret-9");
  ASSERT_NOT_CONTAINS(p.out, "pw-secret-9");
  json_t *j = parse(p.out);
  json_t *e = json_object_get(j, "error");
  ASSERT_STR_EQ(json_string_value(json_object_get(e, "status")), "ES_ECONNECT");
  json_decref(j);
  th_proc_free(&p);

  p = CLI(NULL, "search", "--like", "x"); /* no store yet */
  ASSERT_INT_EQ(p.status, 2);
  ASSERT_CONTAINS(p.err, "embstore init");
  th_proc_free(&p);
}

TEST(cli_init_ingest_search_json_fields_are_stable) {
  th_proc p = CLI(NULL, "--json", "init", "--dim", "3");
  ASSERT_INT_EQ(p.status, 0);
  json_t *j = parse(p.out);
  static const char *const init_keys[] = {
      "created", "adopted", "migrations_applied", "indexes_created", "dim",
      "metric", "orphaned_chunks", "fk_valid", "fk_validated"};
  assert_keys(j, init_keys, 9);
  ASSERT(json_is_true(json_object_get(j, "created")));
  ASSERT_INT_EQ(json_integer_value(json_object_get(j, "dim")), 3);
  json_decref(j);
  th_proc_free(&p);

  const char *input =
      "{\"id\":\"a\",\"text\":\"alpha\",\"embedding\":[1,0,0],"
      "\"metadata\":{\"n\":0.1},\"chunks\":[{\"id\":\"a0\",\"text\":\"x\"}]}\n"
      "\n"
      "{\"id\":\"b\",\"text\":\"beta\",\"embedding\":[0,1,0]}\n"
      "{\"id\":\"c\",\"embedding\":[0,1]}\n"
      "garbage\n";
  p = CLI(input, "ingest", "-", "--json", "--source", "src", "--workspace", "w");
  ASSERT_INT_EQ(p.status, 3); /* some failed, others landed */
  j = parse(p.out);
  static const char *const ingest_keys[] = {"inserted", "updated", "unchanged",
                                            "failed", "duplicates",
                                            "chunks_written", "errors",
                                            "seconds"};
  assert_keys(j, ingest_keys, 8);
  ASSERT_INT_EQ(json_integer_value(json_object_get(j, "inserted")), 2);
  ASSERT_INT_EQ(json_integer_value(json_object_get(j, "failed")), 2);
  ASSERT_INT_EQ(json_integer_value(json_object_get(j, "chunks_written")), 1);
  json_t *errs = json_object_get(j, "errors");
  ASSERT_INT_EQ(json_array_size(errs), 2);
  json_t *e0 = json_array_get(errs, 0);
  static const char *const err_keys[] = {"id", "line", "error"};
  assert_keys(e0, err_keys, 3);
  ASSERT_STR_EQ(json_string_value(json_object_get(e0, "id")), "c");
  ASSERT_INT_EQ(json_integer_value(json_object_get(e0, "line")), 4);
  ASSERT_CONTAINS(json_string_value(json_object_get(e0, "error")),
                  "embedding has 2 values");
  ASSERT_INT_EQ(json_integer_value(json_object_get(json_array_get(errs, 1), "line")), 5);
  json_decref(j);
  th_proc_free(&p);

  /* The same input again: unchanged, nothing rewritten. */
  p = CLI("{\"id\":\"b\",\"text\":\"beta\",\"embedding\":[0,1,0]}\n", "--json",
          "ingest", "-", "--source", "src", "--workspace", "w");
  ASSERT_INT_EQ(p.status, 0);
  j = parse(p.out);
  ASSERT_INT_EQ(json_integer_value(json_object_get(j, "unchanged")), 1);
  json_decref(j);
  th_proc_free(&p);

  p = CLI(NULL, "--json", "search", "--vector", "[1,0.1,0]", "-k", "5");
  ASSERT_INT_EQ(p.status, 0);
  j = parse(p.out);
  static const char *const top[] = {"results"};
  assert_keys(j, top, 1);
  json_t *res = json_object_get(j, "results");
  ASSERT_INT_EQ(json_array_size(res), 2);
  json_t *h = json_array_get(res, 0);
  static const char *const hit_keys[] = {"id", "distance", "text", "source_id",
                                         "metadata"};
  assert_keys(h, hit_keys, 5);
  ASSERT_STR_EQ(json_string_value(json_object_get(h, "id")), "a");
  ASSERT_STR_EQ(json_string_value(json_object_get(h, "source_id")), "src");
  ASSERT_STR_EQ(json_string_value(json_object_get(h, "text")), "alpha");
  json_t *meta = json_object_get(h, "metadata");
  ASSERT_STR_EQ(json_string_value(json_object_get(meta, "workspace")), "w");
  ASSERT(json_real_value(json_object_get(meta, "n")) == 0.1);
  ASSERT(json_real_value(json_object_get(h, "distance")) <
         json_real_value(json_object_get(json_array_get(res, 1), "distance")));
  json_decref(j);
  th_proc_free(&p);

  /* --like excludes the document itself. */
  p = CLI(NULL, "search", "--like", "a", "--json");
  ASSERT_INT_EQ(p.status, 0);
  j = parse(p.out);
  res = json_object_get(j, "results");
  ASSERT_INT_EQ(json_array_size(res), 1);
  ASSERT_STR_EQ(json_string_value(json_object_get(json_array_get(res, 0), "id")), "b");
  json_decref(j);
  th_proc_free(&p);
}

TEST(cli_ingest_exits_2_when_nothing_lands_and_0_for_empty_input) {
  th_proc p = CLI(NULL, "init", "--dim", "2");
  ASSERT_INT_EQ(p.status, 0);
  th_proc_free(&p);
  p = CLI("not json\n{\"id\":\"\",\"embedding\":[1,2]}\n", "ingest", "-");
  ASSERT_INT_EQ(p.status, 2);
  ASSERT_CONTAINS(p.err, "line 1");
  ASSERT_CONTAINS(p.err, "line 2");
  ASSERT_CONTAINS(p.err, "id is missing or empty");
  th_proc_free(&p);
  p = CLI("", "ingest", "-", "--json");
  ASSERT_INT_EQ(p.status, 0);
  json_t *j = parse(p.out);
  ASSERT_INT_EQ(json_integer_value(json_object_get(j, "inserted")), 0);
  json_decref(j);
  th_proc_free(&p);
  p = CLI(NULL, "ingest", "/nonexistent/file.jsonl");
  ASSERT_INT_EQ(p.status, 2);
  ASSERT_CONTAINS(p.err, "/nonexistent/file.jsonl");
  th_proc_free(&p);
}

TEST(cli_migrate_status_lists_applied_and_pending) {
  th_proc p = CLI(NULL, "migrate", "--status", "--json");
  ASSERT_INT_EQ(p.status, 0);
  json_t *j = parse(p.out);
  ASSERT_INT_EQ(json_integer_value(json_object_get(j, "pending")), 5);
  json_decref(j);
  th_proc_free(&p);
  p = CLI(NULL, "init", "--dim", "2");
  th_proc_free(&p);
  p = CLI(NULL, "migrate", "--status", "--json");
  j = parse(p.out);
  ASSERT_INT_EQ(json_integer_value(json_object_get(j, "pending")), 0);
  json_t *m0 = json_array_get(json_object_get(j, "migrations"), 0);
  static const char *const keys[] = {"version", "name", "applied", "applied_at"};
  assert_keys(m0, keys, 4);
  ASSERT(json_is_true(json_object_get(m0, "applied")));
  json_decref(j);
  th_proc_free(&p);
}

TEST(cli_db_commands_control_an_embedded_cluster) {
  char home[600];
  snprintf(home, sizeof home, "%s/h", th_tmpdir());
  const char *url[] = {"--home", home, "db", "url", NULL};
  th_proc p = th_cli(NULL, url);
  ASSERT_INT_EQ(p.status, 0);
  ASSERT_CONTAINS(p.out, "postgresql://embstore@/embstore?host=");
  th_proc_free(&p);
  const char *status[] = {"--home", home, "--json", "db", "status", NULL};
  p = th_cli(NULL, status);
  json_t *j = parse(p.out);
  ASSERT_STR_EQ(json_string_value(json_object_get(j, "state")), "absent");
  json_decref(j);
  th_proc_free(&p);
  const char *start[] = {"--home", home, "--json", "db", "start", NULL};
  p = th_cli(NULL, start);
  ASSERT_INT_EQ(p.status, 0);
  j = parse(p.out);
  static const char *const keys[] = {"state", "pid", "home", "url"};
  assert_keys(j, keys, 4);
  ASSERT_STR_EQ(json_string_value(json_object_get(j, "state")), "running");
  ASSERT(json_integer_value(json_object_get(j, "pid")) > 0);
  json_decref(j);
  th_proc_free(&p);
  /* Commands without --db use it. */
  const char *init[] = {"--home", home, "init", "--dim", "2", NULL};
  p = th_cli(NULL, init);
  ASSERT_INT_EQ(p.status, 0);
  ASSERT_CONTAINS(p.out, "created store");
  th_proc_free(&p);
  const char *stop[] = {"--home", home, "db", "stop", NULL};
  p = th_cli(NULL, stop);
  ASSERT_INT_EQ(p.status, 0);
  ASSERT_CONTAINS(p.out, "stopped");
  th_proc_free(&p);
  const char *with_db[] = {"--db", "dbname=x", "db", "start", NULL};
  p = th_cli(NULL, with_db);
  ASSERT_INT_EQ(p.status, 1);
  th_proc_free(&p);
}

TEST(cli_delete_stats_cleanup_metrics_json_fields_are_stable) {
  th_proc p = CLI(NULL, "init", "--dim", "2");
  ASSERT_INT_EQ(p.status, 0);
  th_proc_free(&p);
  p = CLI("{\"id\":\"a\",\"embedding\":[1,0],\"source_id\":\"s1\","
          "\"metadata\":{\"workspace\":\"w\"},\"chunks\":[{\"id\":\"a0\"}]}\n"
          "{\"id\":\"b\",\"embedding\":[0,1],\"source_id\":\"s2\"}\n",
          "ingest", "-");
  ASSERT_INT_EQ(p.status, 0);
  th_proc_free(&p);

  p = CLI(NULL, "--json", "stats");
  ASSERT_INT_EQ(p.status, 0);
  json_t *j = parse(p.out);
  static const char *const stats_keys[] = {
      "workspace", "documents", "chunks", "without_vector", "orphaned_chunks",
      "sources", "sources_total", "storage_mb", "storage_attribution",
      "reclaimable_mb", "index_health", "health_reasons", "performance"};
  assert_keys(j, stats_keys, 13);
  ASSERT_INT_EQ(json_integer_value(json_object_get(j, "documents")), 2);
  ASSERT_INT_EQ(json_integer_value(json_object_get(j, "chunks")), 1);
  ASSERT_INT_EQ(json_integer_value(json_object_get(j, "sources_total")), 2);
  ASSERT(json_is_real(json_object_get(j, "storage_mb")) ||
         json_is_integer(json_object_get(j, "storage_mb")));
  ASSERT_STR_EQ(json_string_value(json_object_get(j, "index_health")), "healthy");
  json_t *src = json_array_get(json_object_get(j, "sources"), 0);
  static const char *const src_keys[] = {"source_id", "documents", "chunks"};
  assert_keys(src, src_keys, 3);
  ASSERT_STR_EQ(json_string_value(json_object_get(src, "source_id")), "s1");
  ASSERT_INT_EQ(json_integer_value(json_object_get(src, "chunks")), 1);
  static const char *const perf_keys[] = {"avg_search_ms", "avg_insert_ms",
                                          "cache_hit_rate"};
  assert_keys(json_object_get(j, "performance"), perf_keys, 3);
  json_decref(j);
  th_proc_free(&p);

  p = CLI(NULL, "--json", "stats", "--workspace", "w");
  j = parse(p.out);
  ASSERT_INT_EQ(json_integer_value(json_object_get(j, "documents")), 1);
  ASSERT_STR_EQ(json_string_value(json_object_get(j, "storage_attribution")),
                "share of the store's rows");
  json_decref(j);
  th_proc_free(&p);

  p = CLI(NULL, "--json", "delete", "--source", "s1", "--no-cascade");
  ASSERT_INT_EQ(p.status, 2);
  ASSERT_CONTAINS(p.err, "1 chunks of 1 documents");
  th_proc_free(&p);
  p = CLI(NULL, "--json", "delete", "--source", "s1", "--dry-run");
  ASSERT_INT_EQ(p.status, 0);
  j = parse(p.out);
  static const char *const del_keys[] = {"deleted", "chunks_removed", "dry_run"};
  assert_keys(j, del_keys, 3);
  ASSERT(json_is_true(json_object_get(j, "dry_run")));
  ASSERT_INT_EQ(json_integer_value(json_object_get(j, "chunks_removed")), 1);
  json_decref(j);
  th_proc_free(&p);
  p = CLI(NULL, "--json", "delete", "--source", "s1");
  j = parse(p.out);
  ASSERT_INT_EQ(json_integer_value(json_object_get(j, "deleted")), 1);
  ASSERT(json_is_false(json_object_get(j, "dry_run")));
  json_decref(j);
  th_proc_free(&p);

  p = CLI(NULL, "--json", "cleanup", "--min-age", "0s", "--batch-size", "10");
  ASSERT_INT_EQ(p.status, 0);
  j = parse(p.out);
  static const char *const clean_keys[] = {"orphaned_chunks", "orphaned_embeddings",
                                           "cleaned", "dry_run", "details"};
  assert_keys(j, clean_keys, 5);
  json_decref(j);
  th_proc_free(&p);

  p = CLI(NULL, "--json", "metrics", "--since", "1h");
  ASSERT_INT_EQ(p.status, 0);
  j = parse(p.out);
  ASSERT_INT_EQ(json_integer_value(json_object_get(j, "since_s")), 3600);
  json_t *ops = json_object_get(j, "operations");
  ASSERT(json_array_size(ops) >= 3);
  static const char *const op_keys[] = {"operation", "count", "p50_ms", "p95_ms",
                                        "p99_ms", "error_rate"};
  assert_keys(json_array_get(ops, 0), op_keys, 6);
  json_decref(j);
  th_proc_free(&p);
  p = CLI(NULL, "metrics", "--since", "soon");
  ASSERT_INT_EQ(p.status, 1);
  th_proc_free(&p);
  p = CLI(NULL, "cleanup", "--min-age", "-1h");
  ASSERT_INT_EQ(p.status, 1);
  th_proc_free(&p);
}

/* Writes n documents of 64 dimensions with 2 chunks each to path. */
static void write_docs(const char *path, int n) {
  FILE *f = fopen(path, "w");
  ASSERT(f != NULL);
  for (int i = 0; i < n; i++) {
    fprintf(f, "{\"id\":\"m%06d\",\"text\":\"some text for %d\",\"source_id\":"
               "\"s%d\",\"embedding\":[", i, i, i % 5);
    for (int d = 0; d < 64; d++)
      fprintf(f, "%s%.6f", d ? "," : "", (double)((i * 31 + d * 7) % 97) / 97.0);
    fprintf(f, "],\"chunks\":[{\"id\":\"m%06d#0\",\"text\":\"a\"},{\"id\":"
               "\"m%06d#1\",\"text\":\"b\"}]}\n", i, i);
  }
  fclose(f);
}

/* Runs the CLI; returns its peak resident set in KiB. */
static long peak_rss_kib(const char *const *argv) {
  th_proc p = th_cli_io(NULL, 0, -1, argv);
  if (p.status != 0)
    FAIL("exit %d: %s", p.status, p.err);
  long kib = p.maxrss_kib;
  th_proc_free(&p);
  return kib;
}

TEST(cli_ingest_memory_does_not_grow_with_the_input) {
  th_proc p = CLI(NULL, "init", "--dim", "64");
  ASSERT_INT_EQ(p.status, 0);
  th_proc_free(&p);
  char small[700], large[700];
  snprintf(small, sizeof small, "%s/small.jsonl", th_tmpdir());
  snprintf(large, sizeof large, "%s/large.jsonl", th_tmpdir());
  write_docs(small, 3000);
  write_docs(large, 30000);
  const char *a[] = {"--db", th_conninfo(), "ingest", small, "--batch-size", "500", NULL};
  const char *b[] = {"--db", th_conninfo(), "ingest", large, "--batch-size", "500", NULL};
  long rss_small = peak_rss_kib(a), rss_large = peak_rss_kib(b);
  printf("peak RSS: %ld KiB for 3,000 documents, %ld KiB for 30,000\n",
         rss_small, rss_large);
  /* Ten times the input, the same memory (allowing for allocator noise).
   * AddressSanitizer keeps freed memory in quarantine: no measure there. */
#ifndef __SANITIZE_ADDRESS__
  ASSERT(rss_large < rss_small + rss_small / 4 + 2048);
#endif
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings"), 30000);
}
