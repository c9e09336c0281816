/* test_cli.c - the embstore tool: exit codes, --json fields, messages.
 * JSON output is read back with jansson, an independent parser. */
#include <fcntl.h>
#include <jansson.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../src/json.h"
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
      "metric", "orphaned_chunks", "fk_valid", "fk_validated", "index",
      "text_config", "chunk_index"};
  assert_keys(j, init_keys, 12);
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
                                            "seconds", "index"};
  assert_keys(j, ingest_keys, 9);
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
  ASSERT_DBL_EQ(json_real_value(json_object_get(meta, "n")), 0.1, 0);
  ASSERT_DBL_LT(json_real_value(json_object_get(h, "distance")),
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
  ASSERT_INT_EQ(json_integer_value(json_object_get(j, "pending")),
                th_migration_count());
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
  ASSERT_INT_GT(json_integer_value(json_object_get(j, "pid")), 0);
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
      "reclaimable_mb", "index_health", "health_reasons", "performance",
      "models", "served_by", "replica"};
  assert_keys(j, stats_keys, 16);
  ASSERT_STR_EQ(json_string_value(json_object_get(j, "served_by")), "primary");
  ASSERT(json_is_null(json_object_get(j, "replica")));
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
  ASSERT_INT_GE(json_array_size(ops), 3);
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
  ASSERT_NOT_NULL(f);
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
  ASSERT_INT_LT(rss_large, rss_small + rss_small / 4 + 2048);
#endif
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings"), 30000);
}

/* ---- hostile text in human-readable output ------------------------------- */

#define ESC_CSI "\x1b[31m"           /* SGR: red */
#define ESC_OSC "\x1b]0;title\x07"   /* OSC: set the window title, BEL */
#define C1_CSI "\xc2\x9b"            /* U+009B, the one-byte CSI */
#define HOSTILE ESC_CSI ESC_OSC C1_CSI
/* The same in a JSON string, where raw control characters are invalid. */
#define HOSTILE_JSON "\\u001b[31m\\u001b]0;title\\u0007" C1_CSI

/* Fails unless s (what the tool printed as `what`) is free of ESC, BEL,
 * C1 controls, raw 0x9b bytes and the right-to-left override, and is
 * valid UTF-8. */
static void assert_terminal_safe(const char *what, const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    bool c1 = p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f;
    bool rlo = p[0] == 0xe2 && p[1] == 0x80 && p[2] == 0xae;
    if (*p == 0x1b || *p == 0x07 || *p == 0x9b || c1 || rlo)
      FAIL("%s has a terminal control at byte %zu: %s", what,
           (size_t)(p - (const unsigned char *)s), s);
  }
  long bad = es__utf8_invalid_at(s, strlen(s));
  if (bad >= 0)
    FAIL("%s is not valid UTF-8 at byte %ld: %s", what, bad, s);
}

/* Runs the tool; its stdout and stderr must be terminal-safe.  Returns the
 * run (the caller frees it). */
static th_proc cli_safe(int want_status, const char *in, const char *const *args) {
  th_proc p = cli_db(in, args);
  if (p.status != want_status)
    FAIL("%s %s: exit %d, want %d\n%s%s", args[0], args[1] ? args[1] : "",
         p.status, want_status, p.out, p.err);
  assert_terminal_safe("stdout", p.out);
  assert_terminal_safe("stderr", p.err);
  return p;
}
#define CLI_SAFE(status, in, ...) \
  cli_safe(status, in, (const char *const[]){__VA_ARGS__, NULL})

TEST(cli_human_output_escapes_terminal_controls_that_json_keeps_verbatim) {
  th_proc p = CLI(NULL, "init", "--dim", "2");
  ASSERT_INT_EQ(p.status, 0);
  th_proc_free(&p);
  /* The id also carries a right-to-left override (U+202E); the second
   * text is 72 characters of 142 bytes, cut for display. */
  char e_acute[141] = "", input[1024];
  for (int i = 0; i < 70; i++)
    strcat(e_acute, "\xc3\xa9");
  snprintf(input, sizeof input,
           "{\"id\":\"i" HOSTILE_JSON "\xe2\x80\xaex\",\"text\":\"t" HOSTILE_JSON
           "\xc3\xa9\xc3\xa9\",\"source_id\":\"s" HOSTILE_JSON "\",\"embedding\":[1,0],"
           "\"metadata\":{\"workspace\":\"w" HOSTILE_JSON "\"}}\n"
           "{\"id\":\"long\",\"text\":\"ab%s\",\"embedding\":[0.9,0.1]}\n"
           "{\"id\":\"bad" HOSTILE_JSON "\",\"embedding\":[1]}\n",
           e_acute);
  p = CLI_SAFE(3, input, "ingest", "-");
  ASSERT_CONTAINS(p.err, "line 3 (id \"bad\\x1b[31m\\x1b]0;title\\x07\\u009b\")");
  th_proc_free(&p);

  p = CLI_SAFE(0, NULL, "search", "--vector", "[1,0]");
  ASSERT_CONTAINS(p.out, "i\\x1b[31m\\x1b]0;title\\x07\\u009b\\u202ex");
  ASSERT_CONTAINS(p.out, "s\\x1b[31m");
  /* 57 characters of text, then "...", cut between characters. */
  char shown[200];
  snprintf(shown, sizeof shown, "ab%.110s...\n", e_acute);
  ASSERT_CONTAINS(p.out, shown);
  th_proc_free(&p);
  p = CLI_SAFE(0, NULL, "stats");
  ASSERT_CONTAINS(p.out, "s\\x1b[31m\\x1b]0;title\\x07\\u009b");
  th_proc_free(&p);
  p = CLI_SAFE(0, NULL, "stats", "--workspace", "w" HOSTILE);
  ASSERT_CONTAINS(p.out, "workspace w\\x1b[31m");
  th_proc_free(&p);
  p = CLI_SAFE(2, NULL, "search", "--like", "nope" HOSTILE);
  ASSERT_CONTAINS(p.err, "nope\\x1b[31m");
  th_proc_free(&p);
  p = CLI_SAFE(0, NULL, "cleanup", "--min-age", "0s");
  th_proc_free(&p);
  p = CLI_SAFE(0, NULL, "metrics");
  th_proc_free(&p);
  p = CLI_SAFE(0, NULL, "delete", "--source", "s" HOSTILE, "--workspace",
               "w" HOSTILE, "--dry-run");
  ASSERT_CONTAINS(p.out, "would delete 1 documents");
  ASSERT_CONTAINS(p.out, "in workspace w\\x1b[31m");
  th_proc_free(&p);

  /* --json: the exact values, parsed back by an independent parser. */
  p = CLI(NULL, "--json", "search", "--vector", "[1,0]", "-k", "1");
  ASSERT_INT_EQ(p.status, 0);
  json_t *j = parse(p.out);
  json_t *h = json_array_get(json_object_get(j, "results"), 0);
  ASSERT_STR_EQ(json_string_value(json_object_get(h, "id")),
                "i" HOSTILE "\xe2\x80\xaex");
  ASSERT_STR_EQ(json_string_value(json_object_get(h, "text")),
                "t" HOSTILE "\xc3\xa9\xc3\xa9");
  ASSERT_STR_EQ(json_string_value(json_object_get(h, "source_id")), "s" HOSTILE);
  ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(h, "metadata"),
                                                  "workspace")),
                "w" HOSTILE);
  ASSERT_NOT_CONTAINS(p.out, "\x1b"); /* < 0x20 always as \u escapes */
  json_decref(j);
  th_proc_free(&p);
  p = CLI("{\"id\":\"bad" HOSTILE_JSON "\",\"embedding\":[1]}\n", "--json",
          "ingest", "-");
  ASSERT_INT_EQ(p.status, 2);
  j = parse(p.out);
  ASSERT_STR_EQ(json_string_value(json_object_get(
                    json_array_get(json_object_get(j, "errors"), 0), "id")),
                "bad" HOSTILE);
  json_decref(j);
  th_proc_free(&p);
  p = CLI(NULL, "--json", "stats", "--workspace", "w" HOSTILE);
  ASSERT_INT_EQ(p.status, 0);
  j = parse(p.out);
  ASSERT_STR_EQ(json_string_value(json_object_get(j, "workspace")), "w" HOSTILE);
  ASSERT_STR_EQ(json_string_value(json_object_get(
                    json_array_get(json_object_get(j, "sources"), 0), "source_id")),
                "s" HOSTILE);
  json_decref(j);
  th_proc_free(&p);
  p = CLI(NULL, "--json", "delete", "--source", "s" HOSTILE);
  ASSERT_INT_EQ(p.status, 0);
  j = parse(p.out);
  ASSERT_INT_EQ(json_integer_value(json_object_get(j, "deleted")), 1);
  json_decref(j);
  th_proc_free(&p);
}

TEST(cli_db_refuses_a_home_with_terminal_controls_quoting_it_escaped) {
  char home[600];
  snprintf(home, sizeof home, "%s/h" HOSTILE, th_tmpdir());
  const char *status[] = {"--home", home, "db", "status", NULL};
  th_proc p = th_cli(NULL, status);
  /* Such a home is refused (a control character in a path), and the
   * refusal quotes it escaped. */
  ASSERT_INT_EQ(p.status, 2);
  ASSERT_CONTAINS(p.err, "/h\\x1b[31m");
  assert_terminal_safe("stdout", p.out);
  assert_terminal_safe("stderr", p.err);
  th_proc_free(&p);
}

TEST(cli_multi_line_library_messages_stay_on_one_prefixed_line) {
  /* libpq says "...failed: No such file or directory\n\tIs the server
   * running locally...?" for a socket that is not there. */
  const char *argv[] = {"--db", "host=/nonexistent port=1", "stats", NULL};
  th_proc p = th_cli(NULL, argv);
  ASSERT_INT_EQ(p.status, 2);
  ASSERT_CONTAINS(p.err, "Is the server running");
  ASSERT_CONTAINS(p.err, "embstore stats: ");
  char *nl = strchr(p.err, '\n');
  ASSERT_NOT_NULL(nl);
  ASSERT_INT_EQ(nl[1], '\0'); /* one line */
  th_proc_free(&p);
}

/* ---- usage errors, bounds, write errors ------------------------------------ */

TEST(cli_usage_errors_under_json_print_the_error_object_on_stdout) {
  /* --json before and after the fault, and before the command. */
  const char *bad[][7] = {{"--json", "frobnicate", NULL},
                          {"frobnicate", "--json", NULL},
                          {"--json", NULL},
                          {"--bogus", "--json", "stats", NULL},
                          {"--json", "--db", NULL},
                          {"search", "--bogus", "--json", NULL},
                          {"search", "--json", "-k", NULL},
                          {"search", "-k", "0", "--like", "x", "--json"},
                          {"--json", "init", "--dim", "0", NULL},
                          {"--json", "init", NULL},
                          {"ingest", "--json", NULL},
                          {"metrics", "--since", "soon", "--json", NULL},
                          {"cleanup", "--min-age", "25000d", "--json", NULL},
                          {"db", "restart", "--json", NULL},
                          {"stats", "extra", "--json", NULL}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    th_proc p = th_cli(NULL, bad[i]);
    if (p.status != 1)
      FAIL("case %zu: exit %d, want 1\n%s", i, p.status, p.err);
    ASSERT_CONTAINS(p.err, "embstore");
    json_t *j = parse(p.out);
    static const char *const top[] = {"error"};
    assert_keys(j, top, 1);
    json_t *e = json_object_get(j, "error");
    static const char *const keys[] = {"status", "message"};
    assert_keys(e, keys, 2);
    ASSERT_STR_EQ(json_string_value(json_object_get(e, "status")), "ES_EINVAL");
    ASSERT_INT_GT(strlen(json_string_value(json_object_get(e, "message"))), 0);
    json_decref(j);
    th_proc_free(&p);
  }
  /* Without --json, stdout stays empty; "--json" after "--" is no option. */
  const char *plain[] = {"ingest", "a", "--", "--json", NULL};
  th_proc p = th_cli(NULL, plain);
  ASSERT_INT_EQ(p.status, 1);
  ASSERT_STR_EQ(p.out, "");
  th_proc_free(&p);
}

TEST(cli_min_age_and_since_bounds_are_usage_errors_past_the_maximum) {
  th_proc p = CLI(NULL, "init", "--dim", "2");
  ASSERT_INT_EQ(p.status, 0);
  th_proc_free(&p);
  /* --min-age: the library's int, 2147483647 s. */
  p = CLI(NULL, "--json", "cleanup", "--dry-run", "--min-age", "2147483647s");
  ASSERT_INT_EQ(p.status, 0);
  th_proc_free(&p);
  p = CLI(NULL, "cleanup", "--dry-run", "--min-age", "24855d");
  ASSERT_INT_EQ(p.status, 0);
  ASSERT_CONTAINS(p.out, "older than 2147472000 s");
  th_proc_free(&p);
  const char *too_old[] = {"2147483648s", "24856d", "25000d",
                           "99999999999999999999d"};
  for (int i = 0; i < 4; i++) {
    p = CLI(NULL, "cleanup", "--dry-run", "--min-age", too_old[i]);
    if (p.status != 1)
      FAIL("--min-age %s: exit %d, want 1\n%s", too_old[i], p.status, p.err);
    ASSERT_CONTAINS(p.err, "at most 2147483647s");
    th_proc_free(&p);
  }
  /* --since: 100 years. */
  p = CLI(NULL, "--json", "metrics", "--since", "36500d");
  ASSERT_INT_EQ(p.status, 0);
  json_t *j = parse(p.out);
  ASSERT_INT_EQ(json_integer_value(json_object_get(j, "since_s")), 3153600000LL);
  json_decref(j);
  th_proc_free(&p);
  const char *too_long[] = {"3153600001s", "36501d", "1000000000000s"};
  for (int i = 0; i < 3; i++) {
    p = CLI(NULL, "metrics", "--since", too_long[i]);
    if (p.status != 1)
      FAIL("--since %s: exit %d, want 1\n%s", too_long[i], p.status, p.err);
    ASSERT_CONTAINS(p.err, "at most 36500d");
    th_proc_free(&p);
  }
}

/* Runs embstore --db <test db> args... with stdout on /dev/full: it must
 * exit 2 and say why on stderr. */
static void assert_write_error_exits_2(const char *const *args) {
  const char *argv[32] = {"--db", th_conninfo()};
  size_t n = 2;
  for (size_t i = 0; args[i] && n < 31; i++)
    argv[n++] = args[i];
  argv[n] = NULL;
  int fd = open("/dev/full", O_WRONLY | O_CLOEXEC);
  ASSERT_INT_GE(fd, 0);
  th_proc p = th_cli_to(fd, argv);
  close(fd);
  if (p.status != 2)
    FAIL("%s %s > /dev/full: exit %d, want 2\n%s", args[0], args[1] ? args[1] : "",
         p.status, p.err);
  ASSERT_CONTAINS(p.err, "cannot write output: No space left on device");
  th_proc_free(&p);
}

TEST(cli_write_errors_on_stdout_exit_2_with_a_message) {
  th_proc p = CLI(NULL, "init", "--dim", "2");
  ASSERT_INT_EQ(p.status, 0);
  th_proc_free(&p);
  p = CLI("{\"id\":\"a\",\"embedding\":[1,0],\"source_id\":\"s\"}\n", "ingest", "-");
  ASSERT_INT_EQ(p.status, 0);
  th_proc_free(&p);
  const char *cases[][6] = {{"--json", "stats", NULL},
                            {"stats", NULL},
                            {"search", "--like", "a", NULL},
                            {"--json", "search", "--vector", "[1,0]", NULL},
                            {"delete", "--source", "x", "--dry-run", NULL},
                            {"--json", "cleanup", "--dry-run", NULL},
                            {"metrics", NULL},
                            {"migrate", "--status", NULL},
                            {"--json", "init", "--dim", "2", NULL},
                            {"--version", NULL},
                            {"search", "--help", NULL}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    assert_write_error_exits_2(cases[i]);
  /* ingest's summary lost is a failure too. */
  const char *ingest[] = {"--db", th_conninfo(), "--json", "ingest", "-", NULL};
  int fd = open("/dev/full", O_WRONLY | O_CLOEXEC);
  ASSERT_INT_GE(fd, 0);
  p = th_cli_to(fd, ingest);
  close(fd);
  ASSERT_INT_EQ(p.status, 2);
  ASSERT_CONTAINS(p.err, "embstore ingest: cannot write output");
  th_proc_free(&p);
}

TEST(cli_stderr_gets_no_server_notice_sent_while_connecting) {
  es_close(th_open_init(2, ES_METRIC_COSINE));
  /* The server warns at every connection: the setting names a text search
   * configuration that no longer exists. */
  char *db = th_text("SELECT current_database()");
  char sql[300];
  th_exec("CREATE TEXT SEARCH CONFIGURATION public.gone (COPY = english)");
  snprintf(sql, sizeof sql, "ALTER DATABASE %s SET default_text_search_config "
           "= 'public.gone'", db);
  th_exec(sql);
  th_exec("DROP TEXT SEARCH CONFIGURATION public.gone");
  free(db);
  const char *stats[] = {"--db", th_conninfo(), "stats", NULL};
  th_proc p = th_cli(NULL, stats);
  ASSERT_INT_EQ(p.status, 0);
  ASSERT_STR_EQ(p.err, "");
  th_proc_free(&p);
}
