/* test_hostile.c - hostile input to `embstore ingest` and es_batch_upsert:
 * every bad line gets its own error naming the line and the field, every
 * valid line lands, and the counts add up to the documents read.
 *
 * The CLI runs as a real process against the test's own database; its
 * --json output is read back with jansson (strict, and strict about UTF-8
 * too).  Input goes through a pipe with an explicit length, so that raw
 * NUL bytes and invalid UTF-8 reach the tool exactly as written. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

#define DIM 3
#define V "[0.1,0.2,0.3]"

/* ---- input ------------------------------------------------------------------ */

/* A growable byte buffer: the input of one run, NUL bytes included. */
typedef struct hbuf {
  char *p;
  size_t len, cap;
} hbuf;

static void put(hbuf *b, const void *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n + 1)
      cap *= 2;
    char *g = realloc(b->p, cap);
    if (g == NULL)
      FAIL("out of memory");
    b->p = g;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void puts_(hbuf *b, const char *s) { put(b, s, strlen(s)); }

/* A string literal's bytes, NUL bytes included. */
#define PUTLIT(b, s) put(b, s, sizeof(s) - 1)

static void putf(hbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void putf(hbuf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *s = NULL;
  int n = vasprintf(&s, fmt, ap);
  va_end(ap);
  if (n < 0)
    FAIL("out of memory");
  put(b, s, (size_t)n);
  free(s);
}

/* One line: the text and a newline. */
static void line(hbuf *b, const char *s) {
  puts_(b, s);
  puts_(b, "\n");
}

/* A valid document line with this id. */
static void ok_line(hbuf *b, const char *id) {
  putf(b, "{\"id\":\"%s\",\"text\":\"text of %s\",\"embedding\":" V "}\n", id, id);
}

/* n copies of s. */
static char *repeat(const char *s, size_t n) {
  size_t l = strlen(s);
  char *r = malloc(l * n + 1);
  if (r == NULL)
    FAIL("out of memory");
  for (size_t i = 0; i < n; i++)
    memcpy(r + i * l, s, l);
  r[l * n] = '\0';
  return r;
}

/* n nested objects {"a":{"a":...{}...}}; *stored gets jsonb's rendering. */
static char *nest(size_t n, char **stored) {
  hbuf b = {0}, s = {0};
  for (size_t i = 1; i < n; i++) {
    puts_(&b, "{\"a\":");
    puts_(&s, "{\"a\": ");
  }
  puts_(&b, "{}");
  puts_(&s, "{}");
  for (size_t i = 1; i < n; i++) {
    puts_(&b, "}");
    puts_(&s, "}");
  }
  if (stored)
    *stored = s.p;
  else
    free(s.p);
  return b.p;
}

/* ---- running the tool ------------------------------------------------------- */

typedef th_proc run;

static void run_free(run *r) { th_proc_free(r); }

/* Runs `embstore --db <test db> args...` (see th_cli_io). */
static run run_cli_io(const char *in, size_t inlen, int in_fd,
                      const char *const *args) {
  const char *argv[64] = {"--db", th_conninfo()};
  size_t n = 2;
  for (size_t i = 0; args[i] && n < 63; i++)
    argv[n++] = args[i];
  argv[n] = NULL;
  return th_cli_io(in, inlen, in_fd, argv);
}

static run run_cli(const char *in, size_t inlen, const char *const *args) {
  return run_cli_io(in, inlen, -1, args);
}

/* `embstore --json ingest - [extra...]` on the bytes of b. */
static run ingest_args(const hbuf *b, const char *const *extra) {
  const char *args[40] = {"--json", "ingest", "-"};
  size_t n = 3;
  for (size_t i = 0; extra && extra[i] && n < 39; i++)
    args[n++] = extra[i];
  args[n] = NULL;
  return run_cli(b->p ? b->p : "", b->len, args);
}
#define INGEST(b, ...) ingest_args(b, (const char *const[]){__VA_ARGS__, NULL})

static void init_store(void) { es_close(th_open_init(DIM, ES_METRIC_COSINE)); }

/* ---- reading the summary ----------------------------------------------------- */

static json_t *summary(const run *r) {
  json_error_t e;
  json_t *j = json_loads(r->out, 0, &e);
  if (j == NULL)
    FAIL("ingest --json printed no valid JSON (%s at byte %d), exit %d:\n%s\n"
         "stderr: %s",
         e.text, e.position, r->status, r->out, r->err);
  return j;
}

static long long jint(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  if (!json_is_integer(v))
    FAIL("\"%s\" is not an integer in %s", key, json_dumps(o, 0));
  return json_integer_value(v);
}

/* The counts, and the promise: inserted + updated + unchanged + failed +
 * duplicates == documents read; one error entry per failure. */
static void assert_counts(json_t *j, long long ins, long long upd,
                          long long unch, long long failed, long long dups,
                          long long read) {
  char *dump = json_dumps(j, JSON_INDENT(1));
  long long gi = jint(j, "inserted"), gu = jint(j, "updated"),
            gn = jint(j, "unchanged"), gf = jint(j, "failed"),
            gd = jint(j, "duplicates");
  if (gi != ins || gu != upd || gn != unch || gf != failed || gd != dups)
    FAIL("counts: want inserted %lld updated %lld unchanged %lld failed %lld "
         "duplicates %lld, got:\n%s",
         ins, upd, unch, failed, dups, dump);
  if (gi + gu + gn + gf + gd != read)
    FAIL("the counts add up to %lld, not to the %lld documents read:\n%s",
         gi + gu + gn + gf + gd, read, dump);
  json_t *errs = json_object_get(j, "errors");
  if (!json_is_array(errs) || (long long)json_array_size(errs) != gf)
    FAIL("want %lld error entries:\n%s", gf, dump);
  free(dump);
}

/* errors[i] is about line `line`, its id is `id` (NULL: null) unless id is
 * ANY_ID, and its message contains every one of the NULL-terminated wants. */
#define ANY_ID ((const char *)1)
static void assert_error_v(json_t *j, size_t i, long line_no, const char *id,
                           const char *const *wants) {
  json_t *e = json_array_get(json_object_get(j, "errors"), i);
  char *dump = json_dumps(json_object_get(j, "errors"), JSON_INDENT(1));
  if (e == NULL)
    FAIL("no errors[%zu] in %s", i, dump);
  if (jint(e, "line") != line_no)
    FAIL("errors[%zu] is about line %lld, want line %ld:\n%s", i, jint(e, "line"),
         line_no, dump);
  json_t *jid = json_object_get(e, "id");
  if (id != ANY_ID) {
    if (id == NULL && !json_is_null(jid))
      FAIL("errors[%zu] (line %ld): want id null:\n%s", i, line_no, dump);
    if (id != NULL && (!json_is_string(jid) || strcmp(json_string_value(jid), id) != 0))
      FAIL("errors[%zu] (line %ld): want id \"%s\":\n%s", i, line_no, id, dump);
  }
  const char *msg = json_string_value(json_object_get(e, "error"));
  for (size_t k = 0; wants[k]; k++)
    if (msg == NULL || strstr(msg, wants[k]) == NULL)
      FAIL("errors[%zu] (line %ld) must say \"%s\": \"%s\"\nall errors: %s", i,
           line_no, wants[k], msg ? msg : "(null)", dump);
  free(dump);
}
#define ASSERT_ERROR(j, i, line_no, id, ...) \
  assert_error_v(j, i, line_no, id, (const char *const[]){__VA_ARGS__, NULL})

/* The stored document ids, in byte order, comma-separated. */
#define ASSERT_IDS(want)                                                     \
  ASSERT_SQL_STR("SELECT coalesce(string_agg(id, ',' ORDER BY id COLLATE "   \
                 "\"C\"), '') FROM embeddings",                              \
                 want)
#define ASSERT_CHUNK_IDS(want)                                               \
  ASSERT_SQL_STR("SELECT coalesce(string_agg(id || '@' || document_id, ',' " \
                 "ORDER BY id COLLATE \"C\"), '') FROM chunks",              \
                 want)

#define ASSERT_EXIT(r, want)                                                 \
  do {                                                                       \
    if ((r).status != (want))                                                \
      FAIL("exit status %d, want %d\nstdout: %s\nstderr: %s", (r).status,    \
           (want), (r).out, (r).err);                                        \
  } while (0)

/* A SQL string literal of s (standard_conforming_strings is on). */
static char *lit(const char *s) {
  hbuf b = {0};
  puts_(&b, "'");
  for (const char *p = s; *p; p++)
    puts_(&b, *p == '\'' ? "''" : (char[]){*p, '\0'});
  puts_(&b, "'");
  return b.p;
}

/* A query's one text value, with %s-style arguments. */
static void assert_sqlf(const char *file, int lno, const char *want,
                        const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void assert_sqlf(const char *file, int lno, const char *want,
                        const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *sql = NULL;
  if (vasprintf(&sql, fmt, ap) < 0)
    FAIL("out of memory");
  va_end(ap);
  th_assert_text(file, lno, sql, want);
  free(sql);
}
#define ASSERT_SQLF(want, ...) assert_sqlf(__FILE__, __LINE__, want, __VA_ARGS__)

static void assert_tables_intact(void) {
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM pg_tables WHERE schemaname = "
                       "current_schema() AND tablename IN ('embeddings', "
                       "'chunks', 'performance_metrics', 'embstore_meta', "
                       "'embstore_counts', 'embstore_migrations')"),
                6);
}

/* ---- invalid UTF-8 ------------------------------------------------------------- */

TEST(ingest_reports_invalid_utf8_per_line_and_lands_the_rest) {
  init_store();
  hbuf in = {0};
  ok_line(&in, "u1");                                                     /* 1 */
  line(&in, "{\"id\":\"bad\xff\",\"embedding\":" V "}");                  /* 2 */
  line(&in, "{\"id\":\"u3\",\"text\":\"caf\xc3\x28\",\"embedding\":" V "}");
  line(&in, "{\"id\":\"u4\",\"embedding\":" V ",\"source_id\":\"s\xc0\xaf\"}");
  line(&in, "{\"id\":\"u5\",\"text\":\"\xed\xa0\x80\",\"embedding\":" V "}");
  line(&in, "{\"id\":\"u6\",\"text\":\"\\ud800 lone\",\"embedding\":" V "}");
  line(&in, "{\"id\":\"u7\",\"embedding\":" V ",\"chunks\":[{\"id\":\"c7\xfe\"}]}");
  line(&in, "{\"id\":\"u8\",\"embedding\":" V ",\"chunks\":[{\"id\":\"c8\","
            "\"text\":\"ok\"},{\"id\":\"c8b\",\"text\":\"\xf4\x90\x80\x80\"}]}");
  line(&in, "{\"id\":\"u9\",\"text\":\"trunc \xe2\x82\",\"embedding\":" V "}");
  line(&in, "{\"id\":\"u10\",\"text\":\"ok \xe2\x82\xac \xf0\x9f\x98\x80\","
            "\"embedding\":" V ",\"chunks\":[{\"id\":\"c10\",\"text\":\"\xc3\xa9\"}]}");
  line(&in, "{\"id\":\"u11\",\"embedding\":" V ",\"source_id\":\"\xe2\x82\xac\"}");
  run r = INGEST(&in, "--batch-size", "3");
  ASSERT_EXIT(r, 3);
  json_t *j = summary(&r);
  assert_counts(j, 3, 0, 0, 8, 0, 11);
  ASSERT_ERROR(j, 0, 2, NULL, "id", "not valid UTF-8");
  ASSERT_ERROR(j, 1, 3, ANY_ID, "text", "not valid UTF-8", "byte 4");
  ASSERT_ERROR(j, 2, 4, ANY_ID, "source_id", "not valid UTF-8");
  ASSERT_ERROR(j, 3, 5, ANY_ID, "text", "not valid UTF-8");
  ASSERT_ERROR(j, 4, 6, ANY_ID, "text", "surrogate");
  ASSERT_ERROR(j, 5, 7, ANY_ID, "chunks[0].id", "not valid UTF-8");
  ASSERT_ERROR(j, 6, 8, ANY_ID, "chunks[1].text", "not valid UTF-8");
  ASSERT_ERROR(j, 7, 9, ANY_ID, "text", "not valid UTF-8", "byte 7");
  ASSERT_INT_EQ(jint(j, "chunks_written"), 1);
  json_decref(j);
  run_free(&r);
  ASSERT_IDS("u1,u10,u11");
  ASSERT_CHUNK_IDS("c10@u10");
  ASSERT_SQL_STR("SELECT text FROM embeddings WHERE id = 'u10'",
                 "ok \xe2\x82\xac \xf0\x9f\x98\x80");
  ASSERT_SQL_STR("SELECT text FROM chunks WHERE id = 'c10'", "\xc3\xa9");
  ASSERT_SQL_STR("SELECT source_id FROM embeddings WHERE id = 'u11'", "\xe2\x82\xac");
  free(in.p);
}

TEST(ingest_reports_invalid_utf8_in_metadata_naming_the_field_and_lands_the_rest) {
  init_store();
  hbuf in = {0};
  ok_line(&in, "m1");                                                     /* 1 */
  line(&in, "{\"id\":\"m2\",\"embedding\":" V ",\"metadata\":{\"k\":\"v\xff\"}}");
  line(&in, "{\"id\":\"m3\",\"embedding\":" V ",\"metadata\":{\"k\xc3\x28\":1}}");
  ok_line(&in, "m4");                                                     /* 4 */
  line(&in, "{\"id\":\"m5\",\"embedding\":" V ",\"chunks\":[{\"id\":\"c5\","
            "\"metadata\":{\"k\":\"\xed\xa0\x80\"}}]}");
  line(&in, "{\"id\":\"m6\",\"embedding\":" V ",\"metadata\":{\"k\":\"\\ud800\"}}");
  ok_line(&in, "m7");                                                     /* 7 */
  run r = INGEST(&in, "--batch-size", "10");
  ASSERT_EXIT(r, 3);
  json_t *j = summary(&r);
  assert_counts(j, 3, 0, 0, 4, 0, 7);
  ASSERT_IDS("m1,m4,m7");
  ASSERT_CHUNK_IDS("");
  /* Checked at the door like every other string: the message names the
   * field, not the database's encoding error. */
  ASSERT_ERROR(j, 3, 6, ANY_ID, "metadata", "surrogate");
  ASSERT_ERROR(j, 0, 2, ANY_ID, "metadata", "UTF-8");
  ASSERT_ERROR(j, 1, 3, ANY_ID, "metadata", "UTF-8");
  ASSERT_ERROR(j, 2, 5, ANY_ID, "chunks[0].metadata", "UTF-8");
  json_decref(j);
  run_free(&r);
  free(in.p);
}

/* PostgreSQL's numeric type, behind jsonb, holds about 10^+-131072: a
 * metadata number beyond that is valid JSON that the database refuses.  The
 * line must still be reported with the field named. */
TEST(ingest_reports_metadata_numbers_out_of_jsonb_range_naming_the_field) {
  init_store();
  hbuf in = {0};
  ok_line(&in, "r1");                                                     /* 1 */
  line(&in, "{\"id\":\"r2\",\"embedding\":" V ",\"metadata\":{\"n\":1e1000000}}");
  line(&in, "{\"id\":\"r3\",\"embedding\":" V ",\"chunks\":[{\"id\":\"c3\","
            "\"metadata\":{\"n\":-1e-1000000}}]}");                        /* 3 */
  line(&in, "{\"id\":\"r4\",\"embedding\":" V ",\"metadata\":{\"n\":1e308}}");
  ok_line(&in, "r5");                                                     /* 5 */
  run r = ingest_args(&in, NULL);
  ASSERT_EXIT(r, 3);
  json_t *j = summary(&r);
  assert_counts(j, 3, 0, 0, 2, 0, 5);
  ASSERT_IDS("r1,r4,r5");
  ASSERT_ERROR(j, 0, 2, "r2", "metadata");
  ASSERT_ERROR(j, 1, 3, "r3", "chunks[0].metadata");
  json_decref(j);
  run_free(&r);
  free(in.p);
}

/* ---- NUL bytes ----------------------------------------------------------------- */

TEST(ingest_reports_raw_and_escaped_nul_bytes_per_line_and_lands_the_rest) {
  init_store();
  hbuf in = {0};
  ok_line(&in, "n1");                                                     /* 1 */
  PUTLIT(&in, "{\"id\":\"n\0" "2\",\"embedding\":" V "}\n");              /* 2 */
  PUTLIT(&in, "{\"id\":\"n3\",\"text\":\"a\0" "b\",\"embedding\":" V "}\n"); /* 3 */
  PUTLIT(&in, "\0\n");                                                    /* 4 */
  line(&in, "{\"id\":\"n5\\u0000\",\"embedding\":" V "}");                /* 5 */
  line(&in, "{\"id\":\"n6\",\"text\":\"x\\u0000y\",\"embedding\":" V "}");
  line(&in, "{\"id\":\"n7\",\"embedding\":" V ",\"source_id\":\"\\u0000\"}");
  line(&in, "{\"id\":\"n8\",\"embedding\":" V ",\"chunks\":[{\"id\":\"c8\","
            "\"text\":\"\\u0000\"}]}");
  line(&in, "{\"id\":\"n9\",\"embedding\":" V ",\"chunks\":[{\"id\":\"\\u0000c9\"}]}");
  PUTLIT(&in, "{\"id\":\"n10\",\"embedding\":" V "}\0\n");                /* 10 */
  line(&in, "{\"id\":\"n11\",\"text\":\"\\u0001 fine\",\"embedding\":" V "}");
  ASSERT_INT_EQ(memchr(in.p, '\0', in.len) != NULL, 1);
  run r = INGEST(&in, "--batch-size", "4");
  ASSERT_EXIT(r, 3);
  json_t *j = summary(&r);
  assert_counts(j, 2, 0, 0, 9, 0, 11);
  ASSERT_ERROR(j, 0, 2, NULL, "id", "0x00");
  ASSERT_ERROR(j, 1, 3, ANY_ID, "text", "0x00");
  ASSERT_ERROR(j, 2, 4, NULL, "JSON object");
  ASSERT_ERROR(j, 3, 5, ANY_ID, "id", "NUL");
  ASSERT_ERROR(j, 4, 6, ANY_ID, "text", "NUL");
  ASSERT_ERROR(j, 5, 7, ANY_ID, "source_id", "NUL");
  ASSERT_ERROR(j, 6, 8, ANY_ID, "chunks[0].text", "NUL");
  ASSERT_ERROR(j, 7, 9, ANY_ID, "chunks[0].id", "NUL");
  ASSERT_ERROR(j, 8, 10, ANY_ID, "trailing characters");
  json_decref(j);
  run_free(&r);
  ASSERT_IDS("n1,n11");
  ASSERT_SQL_STR("SELECT text FROM embeddings WHERE id = 'n11'", "\x01 fine");
  free(in.p);
}

TEST(ingest_reports_nul_in_metadata_naming_the_field_and_lands_the_rest) {
  init_store();
  hbuf in = {0};
  ok_line(&in, "z1");                                                     /* 1 */
  PUTLIT(&in, "{\"id\":\"z2\",\"embedding\":" V ",\"metadata\":{\"k\":\"a\0"
              "b\"}}\n");                                                 /* 2 */
  line(&in, "{\"id\":\"z3\",\"embedding\":" V ",\"metadata\":{\"k\":\"\\u0000\"}}");
  line(&in, "{\"id\":\"z4\",\"embedding\":" V ",\"metadata\":{\"\\u0000\":1}}");
  line(&in, "{\"id\":\"z5\",\"embedding\":" V ",\"chunks\":[{\"id\":\"c5\","
            "\"metadata\":{\"k\":\"a\\u0000\"}}]}");
  ok_line(&in, "z6");                                                     /* 6 */
  run r = ingest_args(&in, NULL);
  ASSERT_EXIT(r, 3);
  json_t *j = summary(&r);
  assert_counts(j, 2, 0, 0, 4, 0, 6);
  ASSERT_IDS("z1,z6");
  ASSERT_ERROR(j, 0, 2, ANY_ID, "metadata", "0x00");
  ASSERT_ERROR(j, 1, 3, ANY_ID, "metadata", "NUL");
  ASSERT_ERROR(j, 2, 4, ANY_ID, "metadata", "NUL");
  ASSERT_ERROR(j, 3, 5, ANY_ID, "chunks[0].metadata", "NUL");
  json_decref(j);
  run_free(&r);
  free(in.p);
}

/* ---- id length ----------------------------------------------------------------- */

TEST(ingest_refuses_513_byte_ids_and_lands_512_byte_ids_for_documents_and_chunks) {
  init_store();
  char *a512 = repeat("a", 512), *b513 = repeat("b", 513);
  char *e512 = repeat("\xc3\xa9", 256), *euro513 = repeat("\xe2\x82\xac", 171);
  char *c512 = repeat("c", 512), *c513 = repeat("d", 513);
  char *s512 = repeat("s", 512), *s513 = repeat("t", 513);
  hbuf in = {0};
  putf(&in, "{\"id\":\"%s\",\"embedding\":" V "}\n", a512);              /* 1 */
  putf(&in, "{\"id\":\"%s\",\"embedding\":" V "}\n", b513);              /* 2 */
  putf(&in, "{\"id\":\"%s\",\"embedding\":" V "}\n", e512);              /* 3 */
  putf(&in, "{\"id\":\"%s\",\"embedding\":" V "}\n", euro513);           /* 4 */
  putf(&in, "{\"id\":\"k5\",\"embedding\":" V ",\"chunks\":[{\"id\":\"%s\"}]}\n",
       c512);                                                             /* 5 */
  putf(&in, "{\"id\":\"k6\",\"embedding\":" V ",\"chunks\":[{\"id\":\"k6-ok\"},"
            "{\"id\":\"%s\"}]}\n", c513);                                 /* 6 */
  putf(&in, "{\"id\":\"k7\",\"embedding\":" V ",\"source_id\":\"%s\"}\n", s512);
  putf(&in, "{\"id\":\"k8\",\"embedding\":" V ",\"source_id\":\"%s\"}\n", s513);
  run r = INGEST(&in, "--batch-size", "3");
  ASSERT_EXIT(r, 3);
  json_t *j = summary(&r);
  assert_counts(j, 4, 0, 0, 4, 0, 8);
  ASSERT_ERROR(j, 0, 2, NULL, "id is 513 bytes long", "512");
  ASSERT_ERROR(j, 1, 4, NULL, "id is 513 bytes long", "512");
  ASSERT_ERROR(j, 2, 6, "k6", "chunks[1].id is 513 bytes long");
  ASSERT_ERROR(j, 3, 8, "k8", "source_id is 513 bytes long");
  json_decref(j);
  run_free(&r);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings"), 4);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings WHERE octet_length(id) = 512"), 2);
  ASSERT_SQLF("1", "SELECT count(*) FROM embeddings WHERE id = '%s'", a512);
  ASSERT_SQLF("1", "SELECT count(*) FROM embeddings WHERE id = '%s'", e512);
  ASSERT_SQLF("k5", "SELECT document_id FROM chunks WHERE id = '%s'", c512);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM chunks"), 1); /* k6 wrote nothing */
  ASSERT_SQLF(s512, "SELECT source_id FROM embeddings WHERE id = 'k7'");
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings WHERE id IN ('k6', 'k8')"), 0);
  free(a512), free(b513), free(e512), free(euro513);
  free(c512), free(c513), free(s512), free(s513);
  free(in.p);
}

/* ---- non-finite numbers ------------------------------------------------------------ */

TEST(ingest_refuses_nan_and_infinite_vector_values_naming_the_element) {
  init_store();
  hbuf in = {0};
  line(&in, "{\"id\":\"f1\",\"embedding\":[NaN,0,0]}");                  /* 1 */
  line(&in, "{\"id\":\"f2\",\"embedding\":[0,Infinity,0]}");              /* 2 */
  line(&in, "{\"id\":\"f3\",\"embedding\":[0,0,-Infinity]}");             /* 3 */
  line(&in, "{\"id\":\"f4\",\"embedding\":[1e999,0,0]}");                 /* 4 */
  line(&in, "{\"id\":\"f5\",\"embedding\":[0,-1e999,0]}");                /* 5 */
  line(&in, "{\"id\":\"f6\",\"embedding\":[0,0,3.5e38]}");                /* 6 */
  line(&in, "{\"id\":\"f7\",\"embedding\":[1e-999,1,0]}");                /* 7 */
  line(&in, "{\"id\":\"f8\",\"embedding\":" V ",\"chunks\":[{\"id\":\"c8\","
            "\"embedding\":[NaN,0,0]}]}");                                /* 8 */
  line(&in, "{\"id\":\"f9\",\"embedding\":" V ",\"chunks\":[{\"id\":\"c9\","
            "\"embedding\":[0,1e999,0]}]}");                              /* 9 */
  line(&in, "{\"id\":\"f10\",\"embedding\":" V ",\"chunks\":[{\"id\":\"c10\","
            "\"embedding\":[0,0,Infinity]}]}");                           /* 10 */
  line(&in, "{\"id\":\"f11\",\"embedding\":" V ",\"chunks\":[{\"id\":\"c11\","
            "\"embedding\":[0,0,-1e999]}]}");                             /* 11 */
  line(&in, "{\"id\":\"f12\",\"embedding\":" V ",\"chunks\":[{\"id\":\"c12\","
            "\"embedding\":[0.5,0.5,0]}]}");                              /* 12 */
  line(&in, "{\"id\":\"f13\",\"embedding\":[nan,0,0]}");                  /* 13 */
  run r = INGEST(&in, "--batch-size", "2");
  ASSERT_EXIT(r, 3);
  json_t *j = summary(&r);
  assert_counts(j, 2, 0, 0, 11, 0, 13);
  ASSERT_ERROR(j, 0, 1, ANY_ID, "embedding[0]", "finite");
  ASSERT_ERROR(j, 1, 2, ANY_ID, "embedding[1]", "finite");
  ASSERT_ERROR(j, 2, 3, ANY_ID, "embedding[2]");
  ASSERT_ERROR(j, 3, 4, "f4", "embedding[0] is not a finite number");
  ASSERT_ERROR(j, 4, 5, "f5", "embedding[1] is not a finite number");
  ASSERT_ERROR(j, 5, 6, "f6", "embedding[2] is not a finite number");
  ASSERT_ERROR(j, 6, 8, ANY_ID, "chunks[0].embedding[0]", "finite");
  ASSERT_ERROR(j, 7, 9, "f9", "chunks[0].embedding[1] is not a finite number");
  ASSERT_ERROR(j, 8, 10, ANY_ID, "chunks[0].embedding[2]", "finite");
  ASSERT_ERROR(j, 9, 11, "f11", "chunks[0].embedding[2] is not a finite number");
  ASSERT_ERROR(j, 10, 13, ANY_ID, "embedding[0]");
  ASSERT_INT_EQ(jint(j, "chunks_written"), 1);
  json_decref(j);
  run_free(&r);
  ASSERT_IDS("f12,f7");
  ASSERT_SQL_STR("SELECT embedding::text FROM embeddings WHERE id = 'f7'", "[0,1,0]");
  ASSERT_SQL_STR("SELECT embedding::text FROM chunks WHERE id = 'c12'", "[0.5,0.5,0]");
  free(in.p);
}

/* pgvector's cosine distance to a vector of zero length is NaN. */
TEST(a_cosine_store_refuses_zero_vectors_naming_the_line_and_field) {
  init_store();
  hbuf in = {0};
  line(&in, "{\"id\":\"z1\",\"embedding\":[0,0,0]}");                    /* 1 */
  line(&in, "{\"id\":\"z2\",\"embedding\":[-0,0.0,-0e5]}");               /* 2 */
  line(&in, "{\"id\":\"z3\",\"embedding\":[1e-46,1e-46,0]}");             /* 3 */
  line(&in, "{\"id\":\"z4\",\"embedding\":[1e-30,0,0]}");                 /* 4 */
  line(&in, "{\"id\":\"z5\",\"embedding\":" V ",\"chunks\":[{\"id\":\"c5\","
            "\"embedding\":[0,0,0]}]}");                                    /* 5 */
  ok_line(&in, "ok6");                                                      /* 6 */
  line(&in, "{\"id\":\"z7\",\"embedding\":[1e-19,0,0]}");                 /* 7 */
  run r = INGEST(&in, "--batch-size", "3");
  ASSERT_EXIT(r, 3);
  json_t *j = summary(&r);
  assert_counts(j, 2, 0, 0, 5, 0, 7);
  ASSERT_ERROR(j, 0, 1, "z1", "embedding has zero length");
  ASSERT_ERROR(j, 1, 2, "z2", "embedding has zero length");
  ASSERT_ERROR(j, 2, 3, "z3", "embedding has zero length");
  ASSERT_ERROR(j, 3, 4, "z4", "embedding has zero length"); /* squares underflow */
  ASSERT_ERROR(j, 4, 5, "z5", "chunks[0].embedding has zero length");
  json_decref(j);
  run_free(&r);
  ASSERT_IDS("ok6,z7");
  free(in.p);
  /* A zero query vector, or a stored zero vector to search near, is an
   * error, not rows with distance null. */
  const char *q[] = {"--db", th_conninfo(), "--json", "search", "--vector",
                     "[0,-0,1e-46]", NULL};
  r = run_cli(NULL, 0, q);
  ASSERT_EXIT(r, 2);
  ASSERT_CONTAINS(r.out, "zero length");
  run_free(&r);
  th_exec("INSERT INTO embeddings (id, embedding) VALUES ('sqlzero', '[0,0,0]')");
  const char *like[] = {"--db", th_conninfo(), "--json", "search", "--like",
                        "sqlzero", NULL};
  r = run_cli(NULL, 0, like);
  ASSERT_EXIT(r, 2);
  ASSERT_CONTAINS(r.out, "sqlzero\\\" has a vector of zero length");
  run_free(&r);
  /* Other metrics have a distance for them. */
  es_store *s = NULL;
  th_exec("DROP TABLE chunks, embeddings, embstore_meta, embstore_migrations, "
          "embstore_counts, performance_metrics CASCADE");
  s = th_open_init(DIM, ES_METRIC_L2);
  float zero[DIM] = {0};
  es_doc d = {.id = "l2zero", .embedding = zero, .dim = DIM};
  ASSERT_OK(s, es_upsert(s, &d, NULL));
  es_close(s);
}

/* The parser has a branch for "-Infinity" that is never reached: it is
 * reported as a malformed number instead of as not finite. */
TEST(ingest_describes_minus_infinity_as_not_finite_like_infinity) {
  init_store();
  hbuf in = {0};
  line(&in, "{\"id\":\"i1\",\"embedding\":[0,-Infinity,0]}");
  line(&in, "{\"id\":\"i2\",\"embedding\":" V ",\"chunks\":[{\"id\":\"c2\","
            "\"embedding\":[-Infinity,0,0]}]}");
  ok_line(&in, "i3");
  run r = ingest_args(&in, NULL);
  ASSERT_EXIT(r, 3);
  json_t *j = summary(&r);
  assert_counts(j, 1, 0, 0, 2, 0, 3);
  ASSERT_IDS("i3");
  ASSERT_ERROR(j, 0, 1, "i1", "embedding[1]", "NaN and Infinity", "finite");
  ASSERT_ERROR(j, 1, 2, "i2", "chunks[0].embedding[0]", "NaN and Infinity", "finite");
  json_decref(j);
  run_free(&r);
  free(in.p);
}

/* ---- dimensions ---------------------------------------------------------------------- */

TEST(ingest_refuses_vectors_of_the_wrong_dimension_for_documents_and_chunks) {
  init_store();
  hbuf in = {0};
  line(&in, "{\"id\":\"d1\",\"embedding\":[1,2]}");                        /* 1 */
  line(&in, "{\"id\":\"d2\",\"embedding\":[1,2,3,4]}");                    /* 2 */
  line(&in, "{\"id\":\"d3\",\"embedding\":[]}");                           /* 3 */
  line(&in, "{\"id\":\"d4\"}");                                            /* 4 */
  line(&in, "{\"id\":\"d5\",\"embedding\":null}");                         /* 5 */
  line(&in, "{\"id\":\"d6\",\"embedding\":" V ",\"chunks\":[{\"id\":\"c6a\","
            "\"embedding\":null},{\"id\":\"c6b\"},{\"id\":\"c6c\",\"embedding\":"
            "[3,2,1]}]}");                                                 /* 6 */
  line(&in, "{\"id\":\"d7\",\"embedding\":" V ",\"chunks\":[{\"id\":\"c7\","
            "\"embedding\":[1]}]}");                                       /* 7 */
  line(&in, "{\"id\":\"d8\",\"embedding\":" V ",\"chunks\":[{\"id\":\"c8a\"},"
            "{\"id\":\"c8\",\"embedding\":[1,2,3,4,5]}]}");                /* 8 */
  line(&in, "{\"id\":\"d9\",\"embedding\":" V ",\"chunks\":[{\"id\":\"c9\","
            "\"embedding\":[]}]}");                                        /* 9 */
  char *zeros = repeat("0,", 16001);
  zeros[strlen(zeros) - 1] = '\0';
  putf(&in, "{\"id\":\"d10\",\"embedding\":[%s]}\n", zeros);               /* 10 */
  line(&in, "{\"id\":\"d11\",\"embedding\":\"[1,2,3]\"}");                 /* 11 */
  line(&in, "{\"id\":\"d12\",\"embedding\":[1,[2],3]}");                   /* 12 */
  ok_line(&in, "d13");                                                     /* 13 */
  run r = INGEST(&in, "--batch-size", "2");
  ASSERT_EXIT(r, 3);
  json_t *j = summary(&r);
  assert_counts(j, 2, 0, 0, 11, 0, 13);
  ASSERT_ERROR(j, 0, 1, "d1", "embedding has 2 values; the store's dimension is 3");
  ASSERT_ERROR(j, 1, 2, "d2", "embedding has 4 values");
  ASSERT_ERROR(j, 2, 3, "d3", "embedding has 0 values");
  ASSERT_ERROR(j, 3, 4, "d4", "embedding is missing");
  ASSERT_ERROR(j, 4, 5, "d5", "embedding is missing");
  ASSERT_ERROR(j, 5, 7, "d7", "chunks[0].embedding has 1 values");
  ASSERT_ERROR(j, 6, 8, "d8", "chunks[1].embedding has 5 values");
  ASSERT_ERROR(j, 7, 9, "d9", "chunks[0].embedding has 0 values");
  ASSERT_ERROR(j, 8, 10, ANY_ID, "embedding", "more than 16000 values");
  ASSERT_ERROR(j, 9, 11, ANY_ID, "embedding", "array");
  ASSERT_ERROR(j, 10, 12, ANY_ID, "embedding[1]");
  ASSERT_INT_EQ(jint(j, "chunks_written"), 3);
  json_decref(j);
  run_free(&r);
  ASSERT_IDS("d13,d6");
  ASSERT_CHUNK_IDS("c6a@d6,c6b@d6,c6c@d6");
  ASSERT_INT_EQ(th_int("SELECT count(embedding) FROM chunks"), 1);
  free(zeros);
  free(in.p);
}

/* ---- a line of 100 MB ------------------------------------------------------------------- */

TEST(ingest_reports_a_100_mb_line_as_too_long_and_lands_its_neighbours_in_bounded_memory) {
  init_store();
  /* Written to a file in 1 MiB pieces: this process stays small, so the
   * tool's peak RSS is its own. */
  const size_t big = (size_t)100 * 1024 * 1024, piece = 1024 * 1024;
#ifdef __SANITIZE_ADDRESS__
  const bool asan = true;
#else
  const bool asan = false;
#endif
  char path[700];
  snprintf(path, sizeof path, "%s/big.jsonl", th_tmpdir());
  FILE *f = fopen(path, "w");
  ASSERT_NOT_NULL(f);
  hbuf head = {0}, tail = {0};
  ok_line(&head, "before1");                                               /* 1 */
  ok_line(&head, "before2");                                               /* 2 */
  size_t start = head.len;
  puts_(&head, "{\"id\":\"big\",\"embedding\":" V ",\"text\":\"");       /* 3 */
  size_t big_len = head.len - start + big + 2;
  puts_(&tail, "\"}\n");
  ok_line(&tail, "after4");                                                /* 4 */
  line(&tail, "{\"id\":\"after5\",\"embedding\":[NaN,0,0]}");            /* 5 */
  ok_line(&tail, "after6");                                                /* 6 */
  char *xs = repeat("x", piece);
  ASSERT_INT_EQ(fwrite(head.p, 1, head.len, f), head.len);
  for (size_t done = 0; done < big; done += piece)
    ASSERT_INT_EQ(fwrite(xs, 1, piece, f), piece);
  ASSERT_INT_EQ(fwrite(tail.p, 1, tail.len, f), tail.len);
  ASSERT_INT_EQ(fclose(f), 0);
  free(xs), free(head.p), free(tail.p);

  /* What a small ingest costs, for comparison. */
  hbuf small = {0};
  ok_line(&small, "baseline");
  run r = ingest_args(&small, NULL);
  ASSERT_EXIT(r, 0);
  long base_kb = r.maxrss_kib;
  run_free(&r);
  free(small.p);
  th_exec("TRUNCATE embeddings CASCADE");

  /* On standard input, with the default limit (64 MiB). */
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  ASSERT_INT_GE(fd, 0);
  const char *args[] = {"--json", "ingest", "-", NULL};
  r = run_cli_io(NULL, 0, fd, args);
  close(fd);
  ASSERT_EXIT(r, 3);
  json_t *j = summary(&r);
  assert_counts(j, 4, 0, 0, 2, 0, 6);
  char want[120];
  snprintf(want, sizeof want, "line is %zu bytes long", big_len);
  ASSERT_ERROR(j, 0, 3, NULL, want, "67108864", "--max-line-bytes");
  ASSERT_ERROR(j, 1, 5, ANY_ID, "embedding[0]");
  json_decref(j);
  ASSERT_IDS("after4,after6,before1,before2");
  fprintf(stderr, "peak RSS: %ld KiB for one small line, %ld KiB with the "
          "100 MB line (default limit)\n", base_kb, r.maxrss_kib);
  /* Never the whole line: at most the limit's worth of it.  (Under ASan,
   * realloc copies and freed blocks wait in quarantine: RSS says nothing.) */
  if (!asan && r.maxrss_kib - base_kb >= (long)(big / 1024))
    FAIL("peak RSS %ld KiB (%ld KiB for one small line): the tool held the "
         "%zu-byte line", r.maxrss_kib, base_kb, big_len);
  if (!asan && r.maxrss_kib >= base_kb + 64 * 1024 + 16 * 1024)
    FAIL("peak RSS %ld KiB: more than the 64 MiB limit + 16 MiB over %ld KiB",
         r.maxrss_kib, base_kb);
  run_free(&r);

  /* By name, with a 1 MiB limit: nothing of the long line is held. */
  th_exec("TRUNCATE embeddings CASCADE");
  const char *args2[] = {"--json", "ingest", path, "--max-line-bytes", "1048576", NULL};
  r = run_cli(NULL, 0, args2);
  ASSERT_EXIT(r, 3);
  j = summary(&r);
  assert_counts(j, 4, 0, 0, 2, 0, 6);
  ASSERT_ERROR(j, 0, 3, NULL, want, "1048576");
  json_decref(j);
  fprintf(stderr, "peak RSS with --max-line-bytes 1 MiB: %ld KiB\n", r.maxrss_kib);
  if (!asan && r.maxrss_kib >= base_kb + 16 * 1024)
    FAIL("peak RSS %ld KiB with --max-line-bytes 1 MiB (%ld KiB for one small "
         "line)", r.maxrss_kib, base_kb);
  run_free(&r);
  ASSERT_IDS("after4,after6,before1,before2");
  unlink(path);
}

TEST(ingest_max_line_bytes_accepts_exactly_the_limit_and_reports_one_byte_more) {
  init_store();
  hbuf in = {0};
  /* 200 bytes exactly, then 201. */
  const char *head = "{\"id\":\"e1\",\"embedding\":" V ",\"text\":\"";
  size_t pad = 200 - strlen(head) - 2;
  char *x = repeat("x", pad);
  putf(&in, "%s%s\"}\n", head, x);
  putf(&in, "{\"id\":\"e2\",\"embedding\":" V ",\"text\":\"%sy\"}\n", x);
  ASSERT_INT_EQ(strchr(in.p, '\n') - in.p, 200);
  run r = INGEST(&in, "--max-line-bytes", "200");
  ASSERT_EXIT(r, 3);
  json_t *j = summary(&r);
  assert_counts(j, 1, 0, 0, 1, 0, 2);
  ASSERT_ERROR(j, 0, 2, NULL, "line is 201 bytes long; the limit is 200");
  json_decref(j);
  run_free(&r);
  ASSERT_IDS("e1");
  free(x);
  free(in.p);
}

/* ---- metadata shape ---------------------------------------------------------------------- */

TEST(ingest_refuses_metadata_nested_deeper_than_64_levels_and_lands_60) {
  init_store();
  char *s60, *s64, *sc60;
  char *n60 = nest(60, &s60), *n64 = nest(64, &s64), *n65 = nest(65, NULL);
  char *c60 = nest(60, &sc60);
  char *deep = repeat("[", 100000);
  hbuf in = {0};
  putf(&in, "{\"id\":\"h1\",\"embedding\":" V ",\"metadata\":%s}\n", n60);  /* 1 */
  putf(&in, "{\"id\":\"h2\",\"embedding\":" V ",\"metadata\":%s}\n", n64);  /* 2 */
  putf(&in, "{\"id\":\"h3\",\"embedding\":" V ",\"metadata\":%s}\n", n65);  /* 3 */
  putf(&in, "{\"id\":\"h4\",\"embedding\":" V ",\"metadata\":{\"a\":%s}}\n", deep);
  putf(&in, "{\"id\":\"h5\",\"embedding\":" V ",\"chunks\":[{\"id\":\"c5\","
            "\"metadata\":%s}]}\n", n65);                                  /* 5 */
  putf(&in, "{\"id\":\"h6\",\"embedding\":" V ",\"chunks\":[{\"id\":\"c6\","
            "\"metadata\":%s}]}\n", c60);                                  /* 6 */
  putf(&in, "{\"id\":\"h7\",\"embedding\":%s}\n", deep);                   /* 7 */
  run r = ingest_args(&in, NULL);
  ASSERT_EXIT(r, 3);
  json_t *j = summary(&r);
  assert_counts(j, 3, 0, 0, 4, 0, 7);
  ASSERT_ERROR(j, 0, 3, ANY_ID, "metadata", "nested deeper than 64 levels");
  ASSERT_ERROR(j, 1, 4, ANY_ID, "metadata", "nested deeper than 64 levels");
  ASSERT_ERROR(j, 2, 5, ANY_ID, "chunks[0].metadata", "nested deeper than 64 levels");
  ASSERT_ERROR(j, 3, 7, ANY_ID, "embedding[0]");
  json_decref(j);
  run_free(&r);
  ASSERT_IDS("h1,h2,h6");
  ASSERT_SQL_STR("SELECT metadata::text FROM embeddings WHERE id = 'h1'", s60);
  ASSERT_SQL_STR("SELECT metadata::text FROM embeddings WHERE id = 'h2'", s64);
  ASSERT_SQL_STR("SELECT metadata::text FROM chunks WHERE id = 'c6'", sc60);
  free(n60), free(n64), free(n65), free(c60), free(deep);
  free(s60), free(s64), free(sc60);
  free(in.p);
}

TEST(ingest_refuses_metadata_that_is_not_an_object_and_takes_null_as_empty) {
  init_store();
  hbuf in = {0};
  line(&in, "{\"id\":\"o1\",\"embedding\":" V ",\"metadata\":[1,2]}");      /* 1 */
  line(&in, "{\"id\":\"o2\",\"embedding\":" V ",\"metadata\":\"{}\"}");     /* 2 */
  line(&in, "{\"id\":\"o3\",\"embedding\":" V ",\"metadata\":42}");         /* 3 */
  line(&in, "{\"id\":\"o4\",\"embedding\":" V ",\"metadata\":true}");       /* 4 */
  line(&in, "{\"id\":\"o5\",\"embedding\":" V ",\"metadata\":null}");       /* 5 */
  line(&in, "{\"id\":\"o6\",\"embedding\":" V ",\"metadata\":{}}");         /* 6 */
  line(&in, "{\"id\":\"o7\",\"embedding\":" V ",\"chunks\":[{\"id\":\"c7\","
            "\"metadata\":[]}]}");                                          /* 7 */
  line(&in, "{\"id\":\"o8\",\"embedding\":" V ",\"chunks\":[{\"id\":\"c8\","
            "\"metadata\":null}]}");                                        /* 8 */
  line(&in, "{\"id\":\"o9\",\"embedding\":" V ",\"metadata\":false}");      /* 9 */
  line(&in, "{\"id\":\"o10\",\"embedding\":" V ",\"metadata\":-1.5}");      /* 10 */
  line(&in, "{\"id\":\"o11\",\"embedding\":" V ",\"chunks\":[{\"id\":\"c11\","
            "\"metadata\":\"x\"}]}");                                       /* 11 */
  run r = INGEST(&in, "--batch-size", "3");
  ASSERT_EXIT(r, 3);
  json_t *j = summary(&r);
  assert_counts(j, 3, 0, 0, 8, 0, 11);
  ASSERT_ERROR(j, 0, 1, ANY_ID, "metadata", "must be a JSON object", "array");
  ASSERT_ERROR(j, 1, 2, ANY_ID, "metadata", "must be a JSON object", "string");
  ASSERT_ERROR(j, 2, 3, ANY_ID, "metadata", "must be a JSON object");
  ASSERT_ERROR(j, 3, 4, ANY_ID, "metadata", "must be a JSON object");
  ASSERT_ERROR(j, 4, 7, ANY_ID, "chunks[0].metadata", "must be a JSON object", "array");
  ASSERT_ERROR(j, 5, 9, ANY_ID, "metadata", "must be a JSON object");
  ASSERT_ERROR(j, 6, 10, ANY_ID, "metadata", "must be a JSON object");
  ASSERT_ERROR(j, 7, 11, ANY_ID, "chunks[0].metadata", "must be a JSON object", "string");
  json_decref(j);
  run_free(&r);
  ASSERT_IDS("o5,o6,o8");
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings WHERE metadata = '{}'"), 3);
  ASSERT_SQL_STR("SELECT metadata::text FROM chunks WHERE id = 'c8'", "{}");

  /* null metadata and --workspace: the workspace is all there is. */
  hbuf in2 = {0};
  line(&in2, "{\"id\":\"o12\",\"embedding\":" V ",\"metadata\":null}");
  r = INGEST(&in2, "--workspace", "ws");
  ASSERT_EXIT(r, 0);
  run_free(&r);
  ASSERT_SQL_STR("SELECT metadata::text FROM embeddings WHERE id = 'o12'",
                 "{\"workspace\": \"ws\"}");
  free(in.p);
  free(in2.p);
}

/* ---- SQL metacharacters --------------------------------------------------------------------- */

static const char *const hostile[] = {
    "'); DROP TABLE embeddings; --",
    "O'Reilly \"quoted\" back\\slash; semi;colon",
    "$1 $2::text %s %n %x %% ? :name",
    "E'\\\\x' E'\\x00' \\x27 U&'\\0041'",
    "\\.\n\t\r{a,b}\"NULL\" -- /* */",
    "$$ $tag$ ; COMMIT; BEGIN; SELECT pg_sleep(10); --",
    "NULL",
    "\\",
};
#define N_HOSTILE (sizeof hostile / sizeof hostile[0])

/* A hostile string other than h[i] for each field, JSON-encoded by jansson
 * (an encoder independent of embstore). */
static char *hostile_doc(size_t i, bool with_source_and_meta) {
  const char *const *h = hostile;
  size_t n = N_HOSTILE;
  json_t *meta = json_pack("{s:s, s:{s:s}}", h[(i + 3) % n], h[(i + 4) % n],
                           "nested", h[(i + 5) % n], h[(i + 6) % n]);
  json_t *chunk_meta = json_pack("{s:s}", h[(i + 7) % n], h[i]);
  char chunk_id[64];
  snprintf(chunk_id, sizeof chunk_id, "%s#%zu", h[(i + 1) % n], i);
  json_t *doc = json_pack("{s:s, s:s, s:[i,i,i], s:[{s:s, s:s, s:o}]}", "id",
                          h[i], "text", h[(i + 1) % n], "embedding", 1,
                          (int)i + 1, 0, "chunks", "id", chunk_id, "text",
                          h[(i + 2) % n], "metadata", chunk_meta);
  if (doc == NULL || meta == NULL)
    FAIL("json_pack");
  if (with_source_and_meta) {
    json_object_set_new(doc, "source_id", json_string(h[(i + 2) % n]));
    json_object_set_new(doc, "metadata", meta);
  } else {
    json_decref(meta);
  }
  char *s = json_dumps(doc, JSON_COMPACT | JSON_ENSURE_ASCII);
  json_decref(doc);
  return s;
}

static const char cli_source[] = "src'); DELETE FROM chunks; -- $1 %s \\x";
static const char cli_workspace[] = "ws\"}' , \"workspace\": \"other\"} \\ $$";

TEST(ingest_stores_sql_metacharacters_verbatim_in_every_string_field) {
  init_store();
  th_exec("SET standard_conforming_strings = on");
  hbuf in = {0};
  /* Even documents carry their own source_id and metadata (to which
   * --workspace is added); odd ones get both from the options. */
  for (size_t i = 0; i < N_HOSTILE; i++) {
    char *d = hostile_doc(i, i % 2 == 0);
    line(&in, d);
    free(d);
  }
  run r = INGEST(&in, "--batch-size", "3", "--source", cli_source,
                 "--workspace", cli_workspace);
  ASSERT_EXIT(r, 0);
  json_t *j = summary(&r);
  assert_counts(j, N_HOSTILE, 0, 0, 0, 0, N_HOSTILE);
  ASSERT_INT_EQ(jint(j, "chunks_written"), N_HOSTILE);
  json_decref(j);
  run_free(&r);

  assert_tables_intact();
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings"), N_HOSTILE);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM chunks"), N_HOSTILE);
  const char *const *h = hostile;
  size_t n = N_HOSTILE;
  for (size_t i = 0; i < n; i++) {
    char *id = lit(h[i]);
    char *src = lit(i % 2 == 0 ? h[(i + 2) % n] : cli_source);
    char *k1 = lit(h[(i + 3) % n]), *k2 = lit(h[(i + 5) % n]);
    char *ck = lit(h[(i + 7) % n]);
    ASSERT_SQLF("1", "SELECT count(*) FROM embeddings WHERE id = %s", id);
    ASSERT_SQLF(h[(i + 1) % n], "SELECT text FROM embeddings WHERE id = %s", id);
    ASSERT_SQLF("1", "SELECT count(*) FROM embeddings WHERE id = %s AND "
                     "source_id = %s", id, src);
    if (i % 2 == 0) {
      ASSERT_SQLF(h[(i + 4) % n], "SELECT metadata->>%s FROM embeddings "
                                  "WHERE id = %s", k1, id);
      ASSERT_SQLF(h[(i + 6) % n], "SELECT metadata->'nested'->>%s FROM "
                                  "embeddings WHERE id = %s", k2, id);
    } else {
      ASSERT_SQLF(cli_workspace, "SELECT metadata->>'workspace' FROM embeddings "
                                 "WHERE id = %s", id);
      ASSERT_SQLF("1", "SELECT count(*) FROM jsonb_object_keys((SELECT metadata "
                       "FROM embeddings WHERE id = %s))", id);
    }
    char cid[64];
    snprintf(cid, sizeof cid, "%s#%zu", h[(i + 1) % n], i);
    char *cidl = lit(cid);
    ASSERT_SQLF(h[i], "SELECT document_id FROM chunks WHERE id = %s", cidl);
    ASSERT_SQLF(h[(i + 2) % n], "SELECT text FROM chunks WHERE id = %s", cidl);
    ASSERT_SQLF(h[i], "SELECT metadata->>%s FROM chunks WHERE id = %s", ck, cidl);
    free(id), free(src), free(k1), free(k2), free(ck), free(cidl);
  }

  /* Again: every document is unchanged (the merge path sees the same ids);
   * then with other texts: every document is updated. */
  r = INGEST(&in, "--batch-size", "3", "--source", cli_source,
             "--workspace", cli_workspace);
  ASSERT_EXIT(r, 0);
  j = summary(&r);
  assert_counts(j, 0, 0, N_HOSTILE, 0, 0, N_HOSTILE);
  json_decref(j);
  run_free(&r);
  hbuf in2 = {0};
  for (size_t i = 0; i < N_HOSTILE; i++) {
    json_t *d = json_pack("{s:s, s:s, s:[i,i,i]}", "id", h[i], "text",
                          h[(i + 5) % n], "embedding", 1, 1, (int)i);
    char *s = json_dumps(d, JSON_COMPACT);
    line(&in2, s);
    free(s);
    json_decref(d);
  }
  r = INGEST(&in2, "--batch-size", "3");
  ASSERT_EXIT(r, 0);
  j = summary(&r);
  assert_counts(j, 0, N_HOSTILE, 0, 0, 0, N_HOSTILE);
  json_decref(j);
  run_free(&r);
  for (size_t i = 0; i < n; i++) {
    char *id = lit(h[i]);
    ASSERT_SQLF(h[(i + 5) % n], "SELECT text FROM embeddings WHERE id = %s", id);
    free(id);
  }
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM chunks"), N_HOSTILE); /* kept */
  assert_tables_intact();
  free(in.p);
  free(in2.p);
}

TEST(hostile_source_and_workspace_values_work_in_stats_search_and_delete) {
  init_store();
  hbuf in = {0};
  ok_line(&in, "w1");
  ok_line(&in, "w2");
  run r = INGEST(&in, "--source", cli_source, "--workspace", cli_workspace);
  ASSERT_EXIT(r, 0);
  run_free(&r);
  hbuf other = {0};
  ok_line(&other, "w3");
  r = INGEST(&other, "--source", "plain", "--workspace", "other");
  ASSERT_EXIT(r, 0);
  run_free(&r);

  const char *stats[] = {"--json", "stats", "--workspace", cli_workspace, NULL};
  r = run_cli(NULL, 0, stats);
  ASSERT_EXIT(r, 0);
  json_t *j = summary(&r);
  ASSERT_INT_EQ(jint(j, "documents"), 2);
  ASSERT_STR_EQ(json_string_value(json_object_get(j, "workspace")), cli_workspace);
  json_t *src = json_array_get(json_object_get(j, "sources"), 0);
  ASSERT_STR_EQ(json_string_value(json_object_get(src, "source_id")), cli_source);
  json_decref(j);
  run_free(&r);

  const char *search[] = {"--json", "search", "--vector", "[0.1,0.2,0.3]", "-k",
                          "10", "--source", cli_source, NULL};
  r = run_cli(NULL, 0, search);
  ASSERT_EXIT(r, 0);
  j = summary(&r);
  ASSERT_INT_EQ(json_array_size(json_object_get(j, "results")), 2);
  json_decref(j);
  run_free(&r);

  const char *del[] = {"--json", "delete", "--source", cli_source, "--workspace",
                       cli_workspace, NULL};
  r = run_cli(NULL, 0, del);
  ASSERT_EXIT(r, 0);
  j = summary(&r);
  ASSERT_INT_EQ(jint(j, "deleted"), 2);
  json_decref(j);
  run_free(&r);
  ASSERT_IDS("w3");
  assert_tables_intact();
  free(in.p);
  free(other.p);
}

TEST(ingest_refuses_invalid_utf8_in_source_and_workspace_options_naming_them) {
  init_store();
  hbuf in = {0};
  ok_line(&in, "q1");
  line(&in, "{\"id\":\"q2\",\"embedding\":" V ",\"source_id\":\"own\","
            "\"metadata\":{\"workspace\":\"own\"}}");
  /* --source only applies to lines without one: q2 lands. */
  run r = INGEST(&in, "--source", "bad\xff");
  if (r.status != 3 && r.status != 1)
    FAIL("exit %d, want 3 (line refused) or 1 (usage error): %s", r.status, r.err);
  if (r.status == 3) {
    json_t *j = summary(&r);
    assert_counts(j, 1, 0, 0, 1, 0, 2);
    ASSERT_IDS("q2");
    ASSERT_ERROR(j, 0, 1, "q1", "source_id", "UTF-8");
    json_decref(j);
  } else { /* or refused as a usage error, before anything is written */
    ASSERT_CONTAINS(r.err, "--source");
    ASSERT_IDS("");
  }
  run_free(&r);
  th_exec("TRUNCATE embeddings CASCADE");
  r = INGEST(&in, "--workspace", "bad\xfe");
  if (r.status != 3 && r.status != 1)
    FAIL("exit %d, want 3 (line refused) or 1 (usage error): %s", r.status, r.err);
  if (r.status == 3) {
    json_t *j = summary(&r);
    assert_counts(j, 1, 0, 0, 1, 0, 2);
    ASSERT_IDS("q2");
    ASSERT_ERROR(j, 0, 1, "q1", "workspace", "UTF-8");
    json_decref(j);
  } else {
    ASSERT_CONTAINS(r.err, "--workspace");
    ASSERT_IDS("");
  }
  run_free(&r);
  free(in.p);
}

/* ---- empty input and line endings -------------------------------------------------------- */

TEST(ingest_of_empty_or_blank_input_exits_0_and_writes_nothing) {
  init_store();
  hbuf empty = {0};
  run r = ingest_args(&empty, NULL);
  ASSERT_EXIT(r, 0);
  json_t *j = summary(&r);
  assert_counts(j, 0, 0, 0, 0, 0, 0);
  json_decref(j);
  run_free(&r);

  hbuf blank = {0};
  puts_(&blank, "\n\n   \n\t\t\n\r\n \t\r\n\n");
  r = ingest_args(&blank, NULL);
  ASSERT_EXIT(r, 0);
  j = summary(&r);
  assert_counts(j, 0, 0, 0, 0, 0, 0);
  json_decref(j);
  run_free(&r);

  /* an empty file, by name */
  char path[700];
  snprintf(path, sizeof path, "%s/empty.jsonl", th_tmpdir());
  FILE *f = fopen(path, "w");
  ASSERT_NOT_NULL(f);
  fclose(f);
  const char *args[] = {"--json", "ingest", path, NULL};
  r = run_cli(NULL, 0, args);
  ASSERT_EXIT(r, 0);
  j = summary(&r);
  assert_counts(j, 0, 0, 0, 0, 0, 0);
  json_decref(j);
  run_free(&r);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings"), 0);
  free(blank.p);
}

TEST(ingest_reads_crlf_lines_and_a_last_line_without_newline) {
  init_store();
  hbuf in = {0};
  puts_(&in, "{\"id\":\"r1\",\"text\":\"one\",\"embedding\":" V "}\r\n");   /* 1 */
  puts_(&in, "{\"id\":\"r2\",\r\"text\":\"two\",\"embedding\":" V "}\r\n"); /* 2 */
  puts_(&in, "\r\n");                                                        /* 3 */
  puts_(&in, "{\"id\":\"r4\",\"embedding\":[NaN,0,0]}\r\n");                /* 4 */
  puts_(&in, "{\"id\":\"r5\",\"text\":\"five\",\"embedding\":" V "}");      /* 5 */
  char path[700];
  snprintf(path, sizeof path, "%s/crlf.jsonl", th_tmpdir());
  FILE *f = fopen(path, "wb");
  ASSERT_NOT_NULL(f);
  ASSERT_INT_EQ(fwrite(in.p, 1, in.len, f), in.len);
  fclose(f);
  const char *args[] = {"--json", "ingest", path, NULL};
  run r = run_cli(NULL, 0, args);
  ASSERT_EXIT(r, 3);
  json_t *j = summary(&r);
  assert_counts(j, 3, 0, 0, 1, 0, 4);
  ASSERT_ERROR(j, 0, 4, ANY_ID, "embedding[0]");
  json_decref(j);
  run_free(&r);
  ASSERT_IDS("r1,r2,r5");
  ASSERT_SQL_STR("SELECT string_agg(text, ',' ORDER BY id) FROM embeddings",
                 "one,two,five");
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings WHERE text LIKE "
                       "'%' || chr(13) || '%'"),
                0);

  /* An invalid last line without a newline is reported with its number. */
  hbuf in2 = {0};
  puts_(&in2, "{\"id\":\"r6\",\"embedding\":" V "}\r\n");
  puts_(&in2, "{\"id\":\"r7\",\"embedding\":[1,2]}");
  r = ingest_args(&in2, NULL);
  ASSERT_EXIT(r, 3);
  j = summary(&r);
  assert_counts(j, 1, 0, 0, 1, 0, 2);
  ASSERT_ERROR(j, 0, 2, "r7", "embedding has 2 values");
  json_decref(j);
  run_free(&r);
  ASSERT_IDS("r1,r2,r5,r6");
  free(in.p);
  free(in2.p);
}

/* ---- JSON structure -------------------------------------------------------------------------- */

TEST(ingest_refuses_duplicate_keys_unknown_fields_and_trailing_garbage_naming_them) {
  init_store();
  hbuf in = {0};
  line(&in, "{\"id\":\"k1\",\"id\":\"k1b\",\"embedding\":" V "}");          /* 1 */
  line(&in, "{\"id\":\"k2\",\"embedding\":" V ",\"embedding\":" V "}");     /* 2 */
  line(&in, "{\"id\":\"k3\",\"embedding\":" V ",\"chunks\":[{\"id\":\"c3\","
            "\"text\":\"a\",\"text\":\"b\"}]}");                            /* 3 */
  line(&in, "{\"id\":\"k4\",\"embedding\":" V ",\"metdata\":{}}");          /* 4 */
  line(&in, "{\"id\":\"k5\",\"embedding\":" V ",\"chunks\":[{\"id\":\"c5\","
            "\"embeding\":" V "}]}");                                       /* 5 */
  line(&in, "{\"id\":\"k6\",\"embedding\":" V "} trailing");                /* 6 */
  line(&in, "{\"id\":\"k7\",\"embedding\":" V "}{\"id\":\"k7b\",\"embedding\":" V "}");
  line(&in, "{\"id\":\"k8\",\"embedding\":" V "},");                        /* 8 */
  line(&in, "{\"id\":\"k9\",\"embedding\":" V ",\"metadata\":{\"a\":1,\"a\":2}}");
  line(&in, "{\"id\":\"k10\",\"embedding\":" V ",}");                       /* 10 */
  line(&in, "{\"id\":\"k11\",\"embedding\":" V ",\"ID\":\"x\"}");           /* 11 */
  line(&in, "{\"id\":\"k12\",\"embedding\":" V ",\"source_id\":\"s\","
            "\"source_id\":null}");                                         /* 12 */
  line(&in, "{\"id\":\"k13\",\"text\":\"first\",\"embedding\":" V "}");     /* 13 */
  line(&in, "{\"id\":\"k13\",\"text\":\"last\",\"embedding\":" V "}");      /* 14 */
  line(&in, "[{\"id\":\"k15\",\"embedding\":" V "}]");                      /* 15 */
  line(&in, "{\"id\":\"k16\",\"embedding\":" V "");                         /* 16 */
  run r = INGEST(&in, "--batch-size", "4");
  ASSERT_EXIT(r, 3);
  json_t *j = summary(&r);
  assert_counts(j, 2, 0, 0, 13, 1, 16);
  ASSERT_ERROR(j, 0, 1, ANY_ID, "\"id\" appears twice");
  ASSERT_ERROR(j, 1, 2, ANY_ID, "\"embedding\" appears twice");
  ASSERT_ERROR(j, 2, 3, ANY_ID, "chunks[0]", "\"text\" appears twice");
  ASSERT_ERROR(j, 3, 4, ANY_ID, "unknown field \"metdata\"");
  ASSERT_ERROR(j, 4, 5, ANY_ID, "chunks[0]", "unknown field \"embeding\"");
  ASSERT_ERROR(j, 5, 6, ANY_ID, "trailing characters");
  ASSERT_ERROR(j, 6, 7, ANY_ID, "trailing characters");
  ASSERT_ERROR(j, 7, 8, ANY_ID, "trailing characters");
  ASSERT_ERROR(j, 8, 10, ANY_ID, "expected a string");
  ASSERT_ERROR(j, 9, 11, ANY_ID, "unknown field \"ID\"");
  ASSERT_ERROR(j, 10, 12, ANY_ID, "\"source_id\" appears twice");
  ASSERT_ERROR(j, 11, 15, ANY_ID, "JSON object");
  ASSERT_ERROR(j, 12, 16, ANY_ID, "expected ',' or '}'");
  json_decref(j);
  run_free(&r);
  ASSERT_IDS("k13,k9");
  ASSERT_SQL_STR("SELECT text FROM embeddings WHERE id = 'k13'", "last");
  ASSERT_SQL_STR("SELECT metadata->>'a' FROM embeddings WHERE id = 'k9'", "2");
  free(in.p);
}

/* Messages quote names cut to a fixed number of bytes; a cut in the middle
 * of a multibyte character must not make the --json output invalid. */
TEST(ingest_json_output_stays_valid_utf8_when_a_message_cuts_a_long_name) {
  init_store();
  char *x39 = repeat("x", 39), *x199 = repeat("y", 199);
  hbuf in = {0};
  putf(&in, "{\"id\":\"g1\",\"embedding\":" V ",\"%s\xc3\xa9\":1}\n", x39);
  putf(&in, "{\"id\":\"g2\",\"embedding\":" V ",\"chunks\":[{\"id\":\"%s\xc3\xa9\"},"
            "{\"id\":\"%s\xc3\xa9\"}]}\n", x199, x199);
  ok_line(&in, "g3");
  run r = ingest_args(&in, NULL);
  ASSERT_EXIT(r, 3);
  ASSERT_IDS("g3");
  json_t *j = summary(&r); /* jansson refuses invalid UTF-8 */
  assert_counts(j, 1, 0, 0, 2, 0, 3);
  ASSERT_ERROR(j, 0, 1, ANY_ID, "unknown field");
  ASSERT_ERROR(j, 1, 2, "g2", "appears twice");
  json_decref(j);
  run_free(&r);
  free(x39), free(x199);
  free(in.p);
}

/* ---- duplicates whose last occurrence fails --------------------------------------------------- */

TEST(ingest_lands_the_earlier_line_of_an_id_when_its_later_duplicate_fails) {
  init_store();
  hbuf in = {0};
  /* y: the later line is refused at the door (NaN) */
  line(&in, "{\"id\":\"y\",\"text\":\"first\",\"embedding\":" V "}");      /* 1 */
  line(&in, "{\"id\":\"y\",\"text\":\"second\",\"embedding\":[NaN,0,0]}"); /* 2 */
  /* p: the later line claims a chunk of q's */
  line(&in, "{\"id\":\"q\",\"embedding\":" V ",\"chunks\":[{\"id\":\"c9\"}]}");
  line(&in, "{\"id\":\"p\",\"text\":\"first\",\"embedding\":" V ","
            "\"chunks\":[{\"id\":\"c1\"}]}");                                /* 4 */
  line(&in, "{\"id\":\"p\",\"text\":\"second\",\"embedding\":" V ","
            "\"chunks\":[{\"id\":\"c9\"}]}");                                /* 5 */
  /* x: the later line has metadata PostgreSQL refuses */
  line(&in, "{\"id\":\"x\",\"text\":\"first\",\"embedding\":" V "}");      /* 6 */
  line(&in, "{\"id\":\"x\",\"text\":\"second\",\"embedding\":" V ","
            "\"metadata\":{\"k\":\"\\u0000\"}}");                           /* 7 */
  run r = ingest_args(&in, NULL);
  ASSERT_EXIT(r, 3);
  json_t *j = summary(&r);
  ASSERT_SQL_STR("SELECT coalesce(max(text), '(absent)') FROM embeddings "
                 "WHERE id = 'y'", "first");
  ASSERT_SQL_STR("SELECT coalesce(max(text), '(absent)') FROM embeddings "
                 "WHERE id = 'p'", "first");
  ASSERT_CHUNK_IDS("c1@p,c9@q");
  ASSERT_SQL_STR("SELECT coalesce(max(text), '(absent)') FROM embeddings "
                 "WHERE id = 'x'", "first");
  assert_counts(j, 4, 0, 0, 3, 0, 7);
  ASSERT_ERROR(j, 0, 2, ANY_ID, "embedding[0]");
  ASSERT_ERROR(j, 1, 5, "p", "c9");
  ASSERT_ERROR(j, 2, 7, "x", "metadata");
  json_decref(j);
  run_free(&r);
  free(in.p);
}

/* ---- every line hostile ------------------------------------------------------------------------ */

TEST(ingest_exits_2_and_reports_every_line_when_no_line_is_valid) {
  init_store();
  hbuf in = {0};
  line(&in, "garbage");
  line(&in, "{\"id\":\"a2\",\"embedding\":[NaN,0,0]}");
  line(&in, "{\"id\":\"a3\",\"embedding\":[1,2]}");
  char *long_id = repeat("z", 513);
  putf(&in, "{\"id\":\"%s\",\"embedding\":" V "}\n", long_id);
  line(&in, "{\"id\":\"a5\",\"text\":\"\xff\",\"embedding\":" V "}");
  line(&in, "{\"id\":\"a6\",\"embedding\":" V ",\"metadata\":[]}");
  run r = ingest_args(&in, NULL);
  ASSERT_EXIT(r, 2);
  json_t *j = summary(&r);
  assert_counts(j, 0, 0, 0, 6, 0, 6);
  for (size_t i = 0; i < 6; i++)
    ASSERT_INT_EQ(jint(json_array_get(json_object_get(j, "errors"), i), "line"),
                  (long long)i + 1);
  json_decref(j);
  run_free(&r);

  /* Without --json the same, one line of stderr per failure. */
  const char *args[] = {"ingest", "-", NULL};
  r = run_cli(in.p, in.len, args);
  ASSERT_EXIT(r, 2);
  ASSERT_CONTAINS(r.err, "line 1: ");
  ASSERT_CONTAINS(r.err, "line 2 (id \"a2\"): embedding[0]");
  ASSERT_CONTAINS(r.err, "line 3 (id \"a3\"): embedding has 2 values");
  ASSERT_CONTAINS(r.err, "line 4: id is 513 bytes long");
  ASSERT_CONTAINS(r.err, "line 5 (id \"a5\"): text");
  ASSERT_CONTAINS(r.err, "line 6 (id \"a6\"): metadata");
  ASSERT_CONTAINS(r.out, "0 inserted");
  ASSERT_CONTAINS(r.out, "6 failed");
  run_free(&r);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings"), 0);
  free(long_id);
  free(in.p);
}

/* ---- the library ----------------------------------------------------------------------------- */


/* failures[i] is at position pos and says every one of wants. */
static void assert_failure_v(const es_batch_result *r, size_t i, size_t pos,
                             const char *const *wants) {
  if (i >= r->n_failures)
    FAIL("no failure %zu (there are %zu)", i, r->n_failures);
  const es_batch_failure *f = &r->failures[i];
  if (f->position != pos)
    FAIL("failure %zu is at position %zu, want %zu (%s)", i, f->position, pos,
         f->error);
  for (size_t k = 0; wants[k]; k++)
    if (f->error == NULL || strstr(f->error, wants[k]) == NULL)
      FAIL("failure %zu (position %zu) must say \"%s\": \"%s\"", i, pos,
           wants[k], f->error ? f->error : "(null)");
}
#define ASSERT_FAILURE(r, i, pos, ...) \
  assert_failure_v(r, i, pos, (const char *const[]){__VA_ARGS__, NULL})

TEST(batch_upsert_refuses_hostile_documents_by_position_and_lands_the_rest) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  enum { N = 24 };
  static float vec[N][DIM];
  es_doc d[N];
  char ids[N][16];
  for (int i = 0; i < N; i++) {
    snprintf(ids[i], sizeof ids[i], "L%02d", i);
    vec[i][0] = 1, vec[i][1] = (float)i, vec[i][2] = 0.5f;
    d[i] = (es_doc){.id = ids[i], .text = "t", .embedding = vec[i], .dim = DIM};
  }
  char *id513 = repeat("i", 513), *src513 = repeat("s", 513);
  char *deep = nest(65, NULL);
  vec[1][0] = NAN;
  vec[2][1] = INFINITY;
  vec[3][2] = -INFINITY;
  d[4].dim = 2;
  d[5].dim = 0;
  d[6].embedding = NULL;
  d[7].metadata_json = "[1]";
  d[8].metadata_json = "null";
  d[9].metadata_json = "{} x";
  d[10].metadata_json = "{\"a\":";
  d[11].metadata_json = deep;
  d[12].source_id = src513;
  d[13].id = "bad\x80";
  d[14].text = "a\xff" "b";
  static float nanv[DIM] = {NAN, 0, 0};
  es_chunk c15[1] = {{.id = "c15", .embedding = nanv, .dim = DIM}};
  d[15].has_chunks = 1, d[15].chunks = c15, d[15].n_chunks = 1;
  es_chunk c16[2] = {{.id = "c16"}, {.id = id513}};
  d[16].has_chunks = 1, d[16].chunks = c16, d[16].n_chunks = 2;
  es_chunk c17[1] = {{.id = "c17", .text = "\xc0\x80"}};
  d[17].has_chunks = 1, d[17].chunks = c17, d[17].n_chunks = 1;
  es_chunk c18[1] = {{.id = "c18", .metadata_json = "\"str\""}};
  d[18].has_chunks = 1, d[18].chunks = c18, d[18].n_chunks = 1;
  d[19].metadata_json = "{\"a\":\"\\ud800\"}";
  d[20].metadata_json = "{\"q\":\"'); DROP TABLE embeddings; --\"}";
  d[20].source_id = "'; DELETE FROM chunks; --";
  d[21].source_id = "\xe2\x82";
  d[22].metadata_json = "{\"a\":\"\x01\"}";
  d[23].id = "";
  es_batch_result *r = th_batch_upsert(s, d, N, 4, ES_EPARTIAL);
  ASSERT_INT_EQ(r->inserted, 2);
  ASSERT_INT_EQ(r->failed, 22);
  ASSERT_INT_EQ(r->n_failures, 22);
  ASSERT_INT_EQ(r->inserted + r->updated + r->unchanged + r->failed + r->duplicates, N);
  ASSERT_FAILURE(r, 0, 1, "embedding[0] is not a finite number");
  ASSERT_FAILURE(r, 1, 2, "embedding[1] is not a finite number");
  ASSERT_FAILURE(r, 2, 3, "embedding[2] is not a finite number");
  ASSERT_FAILURE(r, 3, 4, "embedding has 2 values");
  ASSERT_FAILURE(r, 4, 5, "embedding has 0 values");
  ASSERT_FAILURE(r, 5, 6, "embedding is missing");
  ASSERT_FAILURE(r, 6, 7, "metadata", "not a JSON object");
  ASSERT_FAILURE(r, 7, 8, "metadata", "not a JSON object");
  ASSERT_FAILURE(r, 8, 9, "metadata", "trailing characters");
  ASSERT_FAILURE(r, 9, 10, "metadata", "end of input");
  ASSERT_FAILURE(r, 10, 11, "metadata", "nested deeper than 64 levels");
  ASSERT_FAILURE(r, 11, 12, "source_id is 513 bytes long");
  ASSERT_FAILURE(r, 12, 13, "id is not valid UTF-8");
  ASSERT_NULL(r->failures[12].id);
  ASSERT_FAILURE(r, 13, 14, "text is not valid UTF-8 (byte 2)");
  ASSERT_STR_EQ(r->failures[13].id, "L14");
  ASSERT_FAILURE(r, 14, 15, "chunks[0].embedding[0] is not a finite number");
  ASSERT_FAILURE(r, 15, 16, "chunks[1].id is 513 bytes long");
  ASSERT_FAILURE(r, 16, 17, "chunks[0].text is not valid UTF-8");
  ASSERT_FAILURE(r, 17, 18, "chunks[0].metadata", "not a JSON object");
  ASSERT_FAILURE(r, 18, 19, "metadata", "surrogate");
  ASSERT_FAILURE(r, 19, 21, "source_id is not valid UTF-8");
  ASSERT_FAILURE(r, 20, 22, "metadata", "control character");
  ASSERT_FAILURE(r, 21, 23, "id is missing or empty");
  es_batch_result_free(r);
  es_close(s);
  ASSERT_IDS("L00,L20");
  ASSERT_SQL_STR("SELECT metadata->>'q' FROM embeddings WHERE id = 'L20'",
                 "'); DROP TABLE embeddings; --");
  ASSERT_SQL_STR("SELECT source_id FROM embeddings WHERE id = 'L20'",
                 "'; DELETE FROM chunks; --");
  assert_tables_intact();
  free(id513), free(src513), free(deep);
}

TEST(batch_upsert_refuses_invalid_utf8_and_nul_in_metadata_before_sending) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  static float v[DIM] = {0.1f, 0.2f, 0.3f};
  es_chunk c3[1] = {{.id = "c3", .metadata_json = "{\"k\":\"a\\u0000\"}"}};
  es_chunk c4[1] = {{.id = "c4", .metadata_json = "{\"k\":\"\xc3\"}"}};
  es_doc d[6] = {
      {.id = "M0", .embedding = v, .dim = DIM},
      {.id = "M1", .embedding = v, .dim = DIM, .metadata_json = "{\"k\":\"v\xff\"}"},
      {.id = "M2", .embedding = v, .dim = DIM, .metadata_json = "{\"k\\u0000\":1}"},
      {.id = "M3", .embedding = v, .dim = DIM, .has_chunks = 1, .chunks = c3,
       .n_chunks = 1},
      {.id = "M4", .embedding = v, .dim = DIM, .has_chunks = 1, .chunks = c4,
       .n_chunks = 1},
      {.id = "M5", .embedding = v, .dim = DIM},
  };
  es_batch_result *r = th_batch_upsert(s, d, 6, 100, ES_EPARTIAL);
  ASSERT_INT_EQ(r->inserted, 2);
  ASSERT_INT_EQ(r->failed, 4);
  ASSERT_IDS("M0,M5");
  ASSERT_FAILURE(r, 0, 1, "metadata", "UTF-8");
  ASSERT_FAILURE(r, 1, 2, "metadata", "NUL");
  ASSERT_FAILURE(r, 2, 3, "chunks[0].metadata", "NUL");
  ASSERT_FAILURE(r, 3, 4, "chunks[0].metadata", "UTF-8");
  for (int i = 0; i < 4; i++)
    ASSERT_INT_EQ(r->failures[i].status, ES_EINVAL);
  es_batch_result_free(r);
  es_close(s); /* flushes the metrics */
  /* Refused at the door: no batch was sent and rejected. */
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM performance_metrics WHERE "
                       "operation = 'ingest_batch' AND NOT success"),
                0);
}
