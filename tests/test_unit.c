/* test_unit.c - codecs, parsing and validation, without a database. */
#include <math.h>

#include "../src/blake2b.h"
#include "../src/internal.h"
#include "../src/json.h"
#include "test.h"

TEST(status_names_and_messages_cover_every_code) {
  ASSERT_STR_EQ(es_status_name(ES_OK), "ES_OK");
  ASSERT_STR_EQ(es_status_name(ES_EPARTIAL), "ES_EPARTIAL");
  ASSERT_STR_EQ(es_strerror(ES_ENOVECTOR), "pgvector extension not available");
  ASSERT_STR_EQ(es_status_name((es_status)999), "ES_UNKNOWN");
  es_metric m;
  ASSERT_INT_EQ(es_metric_parse("l2", &m), ES_OK);
  ASSERT_INT_EQ(m, ES_METRIC_L2);
  ASSERT_INT_EQ(es_metric_parse("dot", &m), ES_EINVAL);
  ASSERT_STR_EQ(es_metric_name(ES_METRIC_IP), "ip");
}

TEST(utf8_accepts_valid_and_rejects_overlong_surrogates_and_truncation) {
  ASSERT_INT_EQ(es__utf8_invalid_at("plain", 5), -1);
  ASSERT_INT_EQ(es__utf8_invalid_at("gr\xc3\xbc\xc3\x9f", 6), -1);
  ASSERT_INT_EQ(es__utf8_invalid_at("\xf0\x9f\x98\x80", 4), -1); /* emoji */
  ASSERT_INT_EQ(es__utf8_invalid_at("ab\xc0\xaf", 4), 2);        /* overlong */
  ASSERT_INT_EQ(es__utf8_invalid_at("\xed\xa0\x80", 3), 0);      /* surrogate */
  ASSERT_INT_EQ(es__utf8_invalid_at("x\xe2\x82", 3), 1);         /* truncated */
  ASSERT_INT_EQ(es__utf8_invalid_at("\xf4\x90\x80\x80", 4), 0);  /* > U+10FFFF */
  ASSERT_INT_EQ(es__utf8_invalid_at("\xff", 1), 0);
}

TEST(vector_binary_and_text_codecs_round_trip) {
  float v[4] = {1.5f, -0.0f, 3.14159274f, 1e-30f}, back[4];
  char bin[4 + 16];
  ASSERT_INT_EQ(es__vector_bin_size(4), 20);
  es__vector_to_bin(v, 4, bin);
  ASSERT_INT_EQ((unsigned char)bin[1], 4); /* dim, big-endian */
  ASSERT_INT_EQ(es__vector_from_bin(bin, sizeof bin, back, 4), 4);
  ASSERT_MEM_EQ(v, back, sizeof v);
  ASSERT_INT_EQ(es__vector_from_bin(bin, sizeof bin - 1, back, 4), -1);
  ASSERT_INT_EQ(es__vector_from_bin(bin, sizeof bin, back, 3), -1);

  char *text = es__vector_to_text(v, 4);
  ASSERT_STR_EQ(text, "[1.5,-0,3.1415927,1e-30]");
  ASSERT_INT_EQ(es__vector_from_text(text, back, 4), 4);
  ASSERT_MEM_EQ(v, back, sizeof v);
  free(text);
  ASSERT_INT_EQ(es__vector_from_text("[1, 2 ,3]", back, 4), 3);
  ASSERT_INT_EQ(es__vector_from_text("[]", back, 4), 0);
  ASSERT_INT_EQ(es__vector_from_text("[1,2", back, 4), -1);
  ASSERT_INT_EQ(es__vector_from_text("[1,2,3,4,5]", back, 4), -2);
  float bad[3] = {0, NAN, INFINITY};
  ASSERT_INT_EQ(es__vector_first_nonfinite(bad, 3), 1);
  ASSERT_INT_EQ(es__vector_first_nonfinite(v, 4), -1);
}

TEST(blake2b_matches_rfc7693_test_vector) {
  static const uint8_t want[64] = {
      0xBA, 0x80, 0xA5, 0x3F, 0x98, 0x1C, 0x4D, 0x0D, 0x6A, 0x27, 0x97, 0xB6,
      0x9F, 0x12, 0xF6, 0xE9, 0x4C, 0x21, 0x2F, 0x14, 0x68, 0x5A, 0xC4, 0xB7,
      0x4B, 0x12, 0xBB, 0x6F, 0xDB, 0xFF, 0xA2, 0xD1, 0x7D, 0x87, 0xC5, 0x39,
      0x2A, 0xAB, 0x79, 0x2D, 0xC2, 0x52, 0xD5, 0xDE, 0x45, 0x33, 0xCC, 0x95,
      0x18, 0xD3, 0x8A, 0xA8, 0xDB, 0xF1, 0x92, 0x5A, 0xB9, 0x23, 0x86, 0xED,
      0xD4, 0x00, 0x99, 0x23};
  uint8_t got[64];
  es__blake2b h;
  es__blake2b_init(&h, 64);
  es__blake2b_update(&h, "abc", 3);
  es__blake2b_final(&h, got);
  ASSERT_MEM_EQ(got, want, 64);

  /* Feeding in pieces across the 128-byte block edge changes nothing. */
  char data[300];
  for (int i = 0; i < 300; i++)
    data[i] = (char)i;
  uint8_t one[16], two[16];
  es__blake2b_init(&h, 16);
  es__blake2b_update(&h, data, 300);
  es__blake2b_final(&h, one);
  es__blake2b_init(&h, 16);
  es__blake2b_update(&h, data, 128);
  es__blake2b_update(&h, data + 128, 1);
  es__blake2b_update(&h, data + 129, 171);
  es__blake2b_final(&h, two);
  ASSERT_MEM_EQ(one, two, 16);
}

TEST(content_hash_ignores_json_whitespace_but_sees_every_field) {
  float v[2] = {1, 2}, w[2] = {1, 2.0000002f};
  es_doc a = {.id = "x", .text = "t", .embedding = v, .dim = 2,
              .metadata_json = "{\"a\": [1, 2], \"b\": \"x y\"}"};
  es_doc b = a;
  b.metadata_json = "{\"a\":[1,2],\"b\":\"x y\"}";
  uint8_t ha[16], hb[16];
  es__doc_content_hash(&a, ha);
  es__doc_content_hash(&b, hb);
  ASSERT_MEM_EQ(ha, hb, 16);
  b.metadata_json = "{\"a\":[1,2],\"b\":\"xy\"}"; /* whitespace in a string */
  es__doc_content_hash(&b, hb);
  ASSERT_MEM_NE(ha, hb, 16);
  b = a;
  b.embedding = w;
  es__doc_content_hash(&b, hb);
  ASSERT_MEM_NE(ha, hb, 16);
  b = a;
  b.source_id = "";
  es__doc_content_hash(&b, hb); /* "" and no source differ */
  ASSERT_MEM_NE(ha, hb, 16);
  b = a;
  b.metadata_json = NULL;
  a.metadata_json = "{ }";
  es__doc_content_hash(&a, ha);
  es__doc_content_hash(&b, hb); /* NULL metadata is {} */
  ASSERT_MEM_EQ(ha, hb, 16);

  es_chunk c1[2] = {{.id = "c1", .text = "a"}, {.id = "c2", .text = "b"}};
  es_chunk c2[2] = {{.id = "c2", .text = "b"}, {.id = "c1", .text = "a"}};
  a.chunks = c1;
  a.n_chunks = 2;
  b.chunks = c2;
  b.n_chunks = 2;
  es__doc_chunks_hash(&a, ha);
  es__doc_chunks_hash(&b, hb); /* order is part of the chunk set */
  ASSERT_MEM_NE(ha, hb, 16);
}

/* Parses a document, expecting success. */
static es_doc_json *parse_ok(const char *json) {
  es_doc_json *d = NULL;
  char err[256];
  if (es_doc_json_parse(json, strlen(json), &d, err, sizeof err) != ES_OK)
    FAIL("parse failed: %s\n  %s", err, json);
  return d;
}

/* Parses a document, expecting an error that mentions want. */
static void parse_err(const char *json, size_t len, const char *want) {
  es_doc_json *d = NULL;
  char err[256];
  if (es_doc_json_parse(json, len, &d, err, sizeof err) == ES_OK)
    FAIL("parse of %s should fail", json);
  ASSERT_NULL(d);
  ASSERT_CONTAINS(err, want);
}

TEST(doc_parser_reads_every_field_of_the_ingest_format) {
  es_doc_json *d = parse_ok(
      "{\"id\":\"doc-1\",\"text\":\"h\\u00e9llo \\ud83d\\ude00\","
      "\"embedding\":[1, -2.5e-1, 3E2],\"metadata\":{\"n\": 0.1, \"a\": [true]},"
      "\"source_id\":\"src\",\"chunks\":[{\"id\":\"c0\",\"text\":\"x\","
      "\"embedding\":null},{\"id\":\"c1\",\"embedding\":[0,0,1],"
      "\"metadata\":{}}]}");
  const es_doc *doc = es_doc_json_doc(d);
  ASSERT_STR_EQ(doc->id, "doc-1");
  ASSERT_STR_EQ(doc->text, "h\xc3\xa9llo \xf0\x9f\x98\x80");
  ASSERT_INT_EQ(doc->dim, 3);
  ASSERT_DBL_EQ(doc->embedding[1], -0.25f, 0);
  ASSERT_DBL_EQ(doc->embedding[2], 300.0f, 0);
  ASSERT_STR_EQ(doc->metadata_json, "{\"n\": 0.1, \"a\": [true]}");
  ASSERT_STR_EQ(doc->source_id, "src");
  ASSERT_INT_EQ(doc->has_chunks, 1);
  ASSERT_INT_EQ(doc->n_chunks, 2);
  ASSERT_NULL(doc->chunks[0].embedding);
  ASSERT_INT_EQ(doc->chunks[1].dim, 3);
  ASSERT_NULL(doc->chunks[1].text);
  es_doc_json_free(d);

  d = parse_ok("{\"id\":\"x\",\"embedding\":[1],\"chunks\":null}");
  ASSERT_INT_EQ(es_doc_json_doc(d)->has_chunks, 0);
  es_doc_json_free(d);
  d = parse_ok("{\"id\":\"x\",\"embedding\":[1],\"chunks\":[]}");
  ASSERT_INT_EQ(es_doc_json_doc(d)->has_chunks, 1);
  ASSERT_INT_EQ(es_doc_json_doc(d)->n_chunks, 0);
  es_doc_json_free(d);
}

TEST(doc_parser_rejects_bad_json_with_the_field_named) {
  parse_err("", 0, "empty document");
  parse_err("[1]", 3, "must be a JSON object");
  parse_err("{\"id\":\"x\",\"metdata\":{}}", 23, "unknown field \"metdata\"");
  parse_err("{\"id\":\"x\",\"id\":\"y\"}", 19, "appears twice");
  parse_err("{\"id\":\"x\",\"embedding\":[1,NaN]}", 30, "embedding[1]: NaN");
  parse_err("{\"id\":\"x\",\"embedding\":[1,\"2\"]}", 30, "embedding[1]: expected a number");
  parse_err("{\"id\":\"x\",\"metadata\":[1]}", 25, "metadata: must be a JSON object");
  parse_err("{\"id\":\"x\",\"metadata\":\"s\"}", 25, "metadata: must be a JSON object");
  parse_err("{\"id\":\"a\\u0000b\"}", 17, "id: contains a NUL byte");
  parse_err("{\"id\":\"a\xff\"}", 10, "id: not valid UTF-8");
  parse_err("{\"id\":\"\\ud800\"}", 15, "lone UTF-16 surrogate");
  parse_err("{\"id\":\"x\"} x", 12, "trailing characters");
  parse_err("{\"id\":\"x\",\"chunks\":[{\"id\":\"c\",\"txt\":1}]}", 39,
            "chunks[0]: unknown field \"txt\"");
  parse_err("{\"id\":\"x\",\"embedding\":[01]}", 27, "expected ',' or ']'");
  parse_err("{\"id\":\"x\"", 9, "expected ',' or '}'");
  /* A NUL byte inside the line ends nothing: it is a control character. */
  parse_err("{\"id\":\"a\0b\"}", 12, "a raw NUL byte (0x00)");

  char deep[700];
  size_t n = (size_t)snprintf(deep, sizeof deep, "{\"id\":\"x\",\"metadata\":");
  for (int i = 0; i < 70; i++)
    n += (size_t)snprintf(deep + n, sizeof deep - n, "{\"a\":");
  deep[n] = '\0';
  parse_err(deep, n, "nested deeper than 64 levels");
}

TEST(doc_defaults_fill_source_and_workspace_only_where_missing) {
  es_doc_json *d = parse_ok("{\"id\":\"x\",\"embedding\":[1]}");
  ASSERT_INT_EQ(es_doc_json_set_defaults(d, "s1", "w\"1"), ES_OK);
  ASSERT_STR_EQ(es_doc_json_doc(d)->source_id, "s1");
  ASSERT_STR_EQ(es_doc_json_doc(d)->metadata_json, "{\"workspace\":\"w\\\"1\"}");
  es_doc_json_free(d);

  d = parse_ok("{\"id\":\"x\",\"source_id\":\"mine\",\"metadata\":{ \"k\": 1 }}");
  ASSERT_INT_EQ(es_doc_json_set_defaults(d, "s1", "w1"), ES_OK);
  ASSERT_STR_EQ(es_doc_json_doc(d)->source_id, "mine");
  ASSERT_STR_EQ(es_doc_json_doc(d)->metadata_json,
                "{\"workspace\":\"w1\", \"k\": 1 }");
  es_doc_json_free(d);

  d = parse_ok("{\"id\":\"x\",\"metadata\":{\"workspace\":\"mine\"}}");
  ASSERT_INT_EQ(es_doc_json_set_defaults(d, NULL, "w1"), ES_OK);
  ASSERT_STR_EQ(es_doc_json_doc(d)->metadata_json, "{\"workspace\":\"mine\"}");
  es_doc_json_free(d);
}

/* Validates doc against a cosine store of dim 2; returns the status,
 * message in err. */
static es_status check(const es_doc *doc, char *err) {
  return es__doc_check(doc, 2, ES_METRIC_COSINE, err, 256);
}

TEST(validation_names_the_field_at_fault) {
  float v[2] = {1, 2}, nan2[2] = {1, NAN};
  char err[256], id513[514];
  es_doc d = {.id = "x", .embedding = v, .dim = 2};
  ASSERT_INT_EQ(check(&d, err), ES_OK);

  es_doc e = d;
  e.id = "";
  ASSERT_INT_EQ(check(&e, err), ES_EINVAL);
  ASSERT_CONTAINS(err, "id is missing or empty");
  memset(id513, 'a', 513);
  id513[513] = '\0';
  e.id = id513;
  ASSERT_INT_EQ(check(&e, err), ES_EINVAL);
  ASSERT_CONTAINS(err, "id is 513 bytes long; the limit is 512");
  id513[512] = '\0';
  ASSERT_INT_EQ(check(&e, err), ES_OK); /* 512 is allowed */

  e = d;
  e.embedding = NULL;
  ASSERT_INT_EQ(check(&e, err), ES_EINVAL);
  ASSERT_CONTAINS(err, "embedding is missing");
  e = d;
  e.dim = 1;
  ASSERT_INT_EQ(check(&e, err), ES_EDIM);
  ASSERT_CONTAINS(err, "embedding has 1 values; the store's dimension is 2");
  e = d;
  e.embedding = nan2;
  ASSERT_INT_EQ(check(&e, err), ES_EINVAL);
  ASSERT_CONTAINS(err, "embedding[1] is not a finite number");
  e = d;
  e.text = "bad \xc3";
  ASSERT_INT_EQ(check(&e, err), ES_EINVAL);
  ASSERT_CONTAINS(err, "text is not valid UTF-8 (byte 5)");
  e = d;
  e.metadata_json = "[1]";
  ASSERT_INT_EQ(check(&e, err), ES_EINVAL);
  ASSERT_CONTAINS(err, "metadata: not a JSON object");

  es_chunk ch[2] = {{.id = "c"}, {.id = "c"}};
  e = d;
  e.chunks = ch;
  e.n_chunks = 2;
  e.has_chunks = 1;
  ASSERT_INT_EQ(check(&e, err), ES_EINVAL);
  ASSERT_CONTAINS(err, "chunk id \"c\" appears twice");
  ch[1].id = "d";
  ch[1].embedding = v;
  ch[1].dim = 3;
  ASSERT_INT_EQ(check(&e, err), ES_EDIM);
  ASSERT_CONTAINS(err, "chunks[1].embedding has 3 values");
}

TEST(conninfo_redaction_hides_passwords) {
  char *r = es__conninfo_redact("host=db user=u password=s3cret dbname=x");
  ASSERT_NOT_NULL(r);
  ASSERT_NOT_CONTAINS(r, "s3cret");
  ASSERT_CONTAINS(r, "password='***'");
  ASSERT_CONTAINS(r, "host='db'");
  free(r);
  r = es__conninfo_redact("postgresql://u:s3cret@db:5433/x");
  ASSERT_NOT_NULL(r);
  ASSERT_NOT_CONTAINS(r, "s3cret");
  ASSERT_CONTAINS(r, "port='5433'");
  free(r);
  char *q = es__conninfo_quote("a b'c\\");
  ASSERT_STR_EQ(q, "'a b\\'c\\\\'");
  free(q);
}

TEST(json_string_escaping_round_trips) {
  es__buf b = {0};
  const char raw[] = "q\"b\\n\n\x01\xc3\xa9";
  ASSERT(es__json_append_string(&b, raw, sizeof raw - 1));
  ASSERT_STR_EQ(b.data, "\"q\\\"b\\\\n\\n\\u0001\xc3\xa9\"");
  es__json j;
  char err[64];
  es__buf back = {0};
  es__json_init(&j, b.data, b.len, err, sizeof err);
  ASSERT(es__json_string(&j, &back, "s"));
  ASSERT_STR_EQ(back.data, raw);
  es__buf_free(&b);
  es__buf_free(&back);
}

