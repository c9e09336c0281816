/* test_export.c - `embstore export` and what makes it exact: metadata
 * hashed in jsonb's own form, checked against the server's output, and a
 * store copied through export and ingest into a fresh one. */
#include <jansson.h>

#include "../src/internal.h"
#include "../src/json.h"
#include "test.h"

/* jsonb's text of json, asked of the server. */
static char *server_text(PGconn *pg, const char *json) {
  const char *v[1] = {json};
  PGresult *r = PQexecParams(pg, "SELECT $1::jsonb::text", 1, NULL, v, NULL, NULL, 0);
  if (PQresultStatus(r) != PGRES_TUPLES_OK)
    FAIL("the server refused %s: %s", json, PQerrorMessage(pg));
  char *t = strdup(PQgetvalue(r, 0, 0));
  PQclear(r);
  return t;
}

/* A random JSON value of depth at most d, appended to b. */
static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static unsigned next(unsigned n) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (unsigned)(rng % n);
}

static void ws(es__buf *b) {
  static const char *const w[] = {"", "", " ", "\n", "\t ", "  "};
  const char *s = w[next(6)];
  es__buf_append(b, s, strlen(s));
}

static void rand_string(es__buf *b) {
  static const char *const parts[] = {
      "a", "b", "ab", "key", "\\u00e9", "\xc3\xa9", "\\n", "\\t", "\\\"", "\\\\",
      "\\/", "/", "\\u0001", "\\u001f", "\x7f", "\\ud83d\\ude00", "\xe2\x82\xac",
      "\\b", "\\f", "\\r", " ", "Z", "\\u0041"};
  es__buf_append(b, "\"", 1);
  unsigned n = next(4);
  for (unsigned i = 0; i < n; i++) {
    const char *p = parts[next(sizeof parts / sizeof parts[0])];
    es__buf_append(b, p, strlen(p));
  }
  es__buf_append(b, "\"", 1);
}

static void rand_number(es__buf *b) {
  static const char *const nums[] = {
      "0", "-0", "1", "-1", "10", "100", "1.0", "1.50", "-0.0", "0.000",
      "1e2", "1E2", "1e+2", "1e-2", "1.5e3", "1.25E-1", "-2.5e-3", "0e5",
      "0.0e-2", "123456789012345678901234567890", "0.1", "12.3400", "9e0",
      "1.000e3", "5e-10", "-0e-1", "3.14159", "2e20", "7.0e-0"};
  const char *p = nums[next(sizeof nums / sizeof nums[0])];
  es__buf_append(b, p, strlen(p));
}

static void rand_value(es__buf *b, int d);

static void rand_object(es__buf *b, int d) {
  es__buf_append(b, "{", 1);
  unsigned n = next(5);
  for (unsigned i = 0; i < n; i++) {
    if (i)
      es__buf_append(b, ",", 1);
    ws(b);
    rand_string(b);
    ws(b);
    es__buf_append(b, ":", 1);
    ws(b);
    rand_value(b, d - 1);
    ws(b);
  }
  es__buf_append(b, "}", 1);
}

static void rand_value(es__buf *b, int d) {
  unsigned k = next(d > 0 ? 7 : 5);
  if (k == 0)
    rand_string(b);
  else if (k == 1 || k == 2)
    rand_number(b);
  else if (k == 3)
    es__buf_append(b, "null", 4);
  else if (k == 4 && next(2))
    es__buf_append(b, "true", 4);
  else if (k == 4)
    es__buf_append(b, "false", 5);
  else if (k == 5)
    rand_object(b, d);
  else {
    es__buf_append(b, "[", 1);
    unsigned n = next(4);
    for (unsigned i = 0; i < n; i++) {
      if (i)
        es__buf_append(b, ",", 1);
      ws(b);
      rand_value(b, d - 1);
    }
    es__buf_append(b, "]", 1);
  }
}

TEST(metadata_in_jsonb_form_is_what_postgresql_prints_for_every_spelling) {
  PGconn *pg = th_connect(th_conninfo());
  static const char *const fixed[] = {
      "{}", "{ }", "{\"b\": 1, \"a\": 2}", "{\"aa\": 1, \"b\": 2, \"ab\": 3}",
      "{\"a\": 1, \"a\": 2}", "{\"a\": {\"z\": [1, {\"y\": 2, \"x\": 3}]}}",
      "{\"n\": 1e2, \"m\": -0, \"o\": 1.50, \"p\": 0.0e-2, \"q\": 1.5e3}",
      "{\"s\": \"\\u00e9\\u0001\\/\\ud83d\\ude00\\\"\\\\\\b\\f\\n\\r\\t\"}",
      "{\"\xc3\xa9\": 1, \"e\": 2, \"\\u00e9\": 3}",
      "{\"big\": 123456789012345678901234567890.5e-5}",
      "{\"t\": [true, false, null, [], {}]}", "{\"tiny\": 5e-20, \"huge\": 7e25}"};
  es__buf out = {0}, in = {0};
  for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
    th_set_fail_context("%s", fixed[i]);
    ASSERT(es__json_canonical(fixed[i], strlen(fixed[i]), &out));
    char *want = server_text(pg, fixed[i]);
    ASSERT_STR_EQ(out.data, want);
    /* The form is a fixed point: read back, it prints itself. */
    es__buf again = {0};
    ASSERT(es__json_canonical(out.data, out.len, &again));
    ASSERT_STR_EQ(again.data, out.data);
    es__buf_free(&again);
    free(want);
  }
  for (int i = 0; i < 3000; i++) {
    in.len = 0;
    rand_object(&in, 3);
    th_set_fail_context("random object %d: %s", i, in.data);
    ASSERT(es__json_canonical(in.data, in.len, &out));
    char *want = server_text(pg, in.data);
    ASSERT_STR_EQ(out.data, want);
    free(want);
  }
  th_set_fail_context(NULL);
  ASSERT(!es__json_canonical("[1]", 3, &out));
  ASSERT(!es__json_canonical("{\"a\":1} x", 9, &out));
  es__buf_free(&out);
  es__buf_free(&in);
  PQfinish(pg);
}

TEST(content_hashes_agree_for_metadata_jsonb_cannot_tell_apart) {
  float v[2] = {1, 2};
  static const char *const same[][2] = {
      {"{\"b\": 1, \"a\": 2}", "{\"a\":2,\"b\":1}"},
      {"{\"a\": 1e2}", "{\"a\": 100}"},
      {"{\"a\": \"\\u00e9\"}", "{\"a\": \"\xc3\xa9\"}"},
      {"{\"a\": 1, \"a\": 2}", "{\"a\": 2}"},
      {"{\"a\": -0.0}", "{\"a\": 0.0}"},
  };
  static const char *const differ[][2] = {
      {"{\"a\": 1.0}", "{\"a\": 1}"}, /* jsonb keeps the scale */
      {"{\"a\": [1, 2]}", "{\"a\": [2, 1]}"},
      {"{\"a\": \"x\"}", "{\"a\": \"X\"}"},
  };
  for (size_t i = 0; i < 5 + 3; i++) {
    const char *const *pair = i < 5 ? same[i] : differ[i - 5];
    es_doc a = {.id = "x", .text = "t", .embedding = v, .dim = 2,
                .metadata_json = pair[0]};
    es_doc b = a;
    b.metadata_json = pair[1];
    es_chunk ca = {.id = "c", .metadata_json = pair[0]};
    es_chunk cb = {.id = "c", .metadata_json = pair[1]};
    a.chunks = &ca;
    b.chunks = &cb;
    a.n_chunks = b.n_chunks = 1;
    uint8_t ha[16], hb[16], ka[16], kb[16];
    es__doc_content_hash(&a, ha);
    es__doc_content_hash(&b, hb);
    es__doc_chunks_hash(&a, ka);
    es__doc_chunks_hash(&b, kb);
    th_set_fail_context("%s vs %s", pair[0], pair[1]);
    if (i < 5) {
      ASSERT_MEM_EQ(ha, hb, 16);
      ASSERT_MEM_EQ(ka, kb, 16);
    } else {
      ASSERT_MEM_NE(ha, hb, 16);
      ASSERT_MEM_NE(ka, kb, 16);
    }
  }
  th_set_fail_context(NULL);
}

/* The test database's conninfo with another database name. */
static void other_db(char *ci, size_t cap, const char *suffix) {
  char *db = th_text("SELECT current_database()");
  char sql[300];
  snprintf(sql, sizeof sql, "CREATE DATABASE %s_%s TEMPLATE template0 "
           "ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'", db, suffix);
  th_exec(sql);
  snprintf(ci, cap, "%s dbname=%s_%s", th_conninfo(), db, suffix);
  free(db);
}

/* Every stored field of both tables, hashes included, as one text. */
static char *content_of(const char *ci) {
  PGconn *pg = th_connect(ci);
  PGresult *r = PQexec(pg,
      "SELECT string_agg(concat_ws('|', id, text, embedding::text, metadata::text, "
      "source_id, encode(content_hash, 'hex'), encode(chunks_hash, 'hex')), E'\\n' "
      "ORDER BY id) || E'\\n' || coalesce((SELECT string_agg(concat_ws('|', id, "
      "document_id, chunk_index, text, embedding::text, metadata::text), E'\\n' "
      "ORDER BY id) FROM chunks), '') FROM embeddings");
  if (PQresultStatus(r) != PGRES_TUPLES_OK)
    FAIL("%s", PQerrorMessage(pg));
  char *t = strdup(PQgetvalue(r, 0, 0));
  PQclear(r);
  PQfinish(pg);
  return t;
}

TEST(export_then_ingest_into_a_fresh_store_writes_the_same_content) {
  /* Metadata spelled as jsonb would not, vectors that need all 9 digits,
   * a chunk without a vector, a document without a source. */
  static const char input[] =
      "{\"id\":\"a\",\"text\":\"alpha \\u00e9\\n\",\"embedding\":[0.1,0.2,0.30000001],"
      "\"metadata\":{\"z\":1e2,\"a\":[1.50,\"\\u0041\"],\"workspace\":\"w1\",\"a\":3},"
      "\"source_id\":\"s1\",\"chunks\":[{\"id\":\"a#0\",\"text\":\"x\","
      "\"embedding\":[1e-7,2,3]},{\"id\":\"a#1\",\"text\":\"y\","
      "\"metadata\":{\"page\":2, \"b\":true}}]}\n"
      "{\"id\":\"b\",\"text\":\"beta\",\"embedding\":[3.4028235e38,-1.17549435e-38,1],"
      "\"metadata\":{\"workspace\":\"w2\"}}\n"
      "{\"id\":\"c/\\u00fc d\",\"text\":\"\",\"embedding\":[-0.0,0.5,0.25],"
      "\"source_id\":\"s2\",\"chunks\":[]}\n";
  const char *init[] = {"--db", th_conninfo(), "init", "--dim", "3", NULL};
  th_proc p = th_cli(NULL, init);
  ASSERT_INT_EQ(p.status, 0);
  th_proc_free(&p);
  const char *ingest[] = {"--db", th_conninfo(), "ingest", "-", NULL};
  p = th_cli(input, ingest);
  ASSERT_INT_EQ(p.status, 0);
  th_proc_free(&p);

  const char *exp[] = {"--db", th_conninfo(), "export", "--embeddings", NULL};
  p = th_cli(NULL, exp);
  ASSERT_INT_EQ(p.status, 0);
  ASSERT_CONTAINS(p.err, "3 documents, 2 chunks");
  char *dump = p.out;
  p.out = NULL;
  th_proc_free(&p);
  /* One line a document, in id order. */
  ASSERT(strncmp(dump, "{\"id\":\"a\",", 10) == 0);
  size_t lines = 0;
  for (const char *q = dump; *q; q++)
    lines += *q == '\n';
  ASSERT_INT_EQ((long long)lines, 3);

  char fresh[1200];
  other_db(fresh, sizeof fresh, "copy");
  const char *init2[] = {"--db", fresh, "init", "--dim", "3", NULL};
  p = th_cli(NULL, init2);
  ASSERT_INT_EQ(p.status, 0);
  th_proc_free(&p);
  const char *ingest2[] = {"--db", fresh, "ingest", "-", "--json", NULL};
  p = th_cli(dump, ingest2);
  ASSERT_INT_EQ(p.status, 0);
  ASSERT_CONTAINS(p.out, "\"inserted\":3");
  th_proc_free(&p);
  char *a = content_of(th_conninfo()), *b = content_of(fresh);
  ASSERT_STR_EQ(b, a);
  free(a);
  free(b);
  /* The original's content hashes hold for the copy: unchanged, both ways. */
  p = th_cli(dump, ingest2);
  ASSERT_CONTAINS(p.out, "\"unchanged\":3");
  th_proc_free(&p);
  const char *ingest3[] = {"--db", th_conninfo(), "ingest", "-", "--json", NULL};
  p = th_cli(dump, ingest3);
  ASSERT_CONTAINS(p.out, "\"unchanged\":3");
  th_proc_free(&p);
  /* Filtered, and without vectors. */
  const char *exp2[] = {"--db", th_conninfo(), "export", "--filter",
                        "{\"workspace\":\"w2\"}", NULL};
  p = th_cli(NULL, exp2);
  ASSERT_INT_EQ(p.status, 0);
  ASSERT_STR_EQ(p.out, "{\"id\":\"b\",\"text\":\"beta\",\"metadata\":{\"workspace\": "
                "\"w2\"},\"source_id\":null}\n");
  ASSERT_CONTAINS(p.err, "without vectors");
  th_proc_free(&p);
  free(dump);
  char *db = th_text("SELECT current_database()");
  char sql[200];
  snprintf(sql, sizeof sql, "DROP DATABASE %s_copy", db);
  th_exec(sql);
  free(db);
}
