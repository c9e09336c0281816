/* test_serve_review.c - `embstore serve` against what a hostile client or
 * tenant tries: ids longer than a short buffer, a tenant writing over
 * another workspace's document, error messages naming another tenant's
 * document.  Real sockets, real PostgreSQL. */
#define _GNU_SOURCE
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "http.h"
#include "test.h"

#define WRITER "writer-token-0123456789"
#define TENANT1 "tenant-w1-token-0123456"
#define TENANT2 "tenant-w2-token-0123456"

/* Initialises the test's store (3 dimensions) through the tool. */
static void init_store(void) {
  const char *argv[] = {"--db", th_conninfo(), "init", "--dim", "3", NULL};
  th_proc p = th_cli(NULL, argv);
  ASSERT_INT_EQ(p.status, 0);
  th_proc_free(&p);
}

/* A server with a writer for every workspace and a tenant of w1 and one
 * of w2. */
static th_server start_with_tenants(void) {
  char *path;
  ASSERT(asprintf(&path, "%s/tokens", th_tmpdir()) > 0);
  FILE *f = fopen(path, "w");
  ASSERT(f != NULL);
  fputs(WRITER " write * the-writer\n" TENANT1 " write w1 tenant-one\n"
        TENANT2 " write w2 tenant-two\n", f);
  ASSERT_INT_EQ(fclose(f), 0);
  ASSERT_INT_EQ(chmod(path, 0600), 0);
  th_server s = th_serve_start(NULL, (const char *const[]){"--tokens", path, NULL});
  free(path);
  return s;
}

/* A request with a bearer token (NULL: none) and a JSON body (or none). */
static th_http as(const th_server *s, const char *method, const char *path,
                  const char *token, const char *json) {
  char auth[256];
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", token ? token : "");
  const char *h[] = {"Content-Type: application/json", token ? auth : NULL, NULL};
  return th_request(s, method, path, h, json, json ? strlen(json) : 0);
}

static json_t *body_json(const th_http *r) {
  json_error_t e;
  json_t *j = json_loadb(r->body, r->len, 0, &e);
  if (j == NULL)
    FAIL("not JSON (%s): %.300s", e.text, r->body);
  return j;
}

TEST(serve_ids_longer_than_a_short_buffer_reach_their_own_document) {
  init_store();
  th_server s = th_serve_start(NULL, NULL);
  /* Two ids, one the other's first 241 bytes: "/v1/documents/" and the
   * short one fill 255 bytes. */
  char shortid[242], longid[501];
  memset(shortid, 'x', 241);
  shortid[241] = '\0';
  memset(longid, 'x', 500);
  longid[500] = '\0';
  char *body;
  ASSERT(asprintf(&body, "{\"documents\":[{\"id\":\"%s\",\"text\":\"short\","
                  "\"embedding\":[1,0,0]},{\"id\":\"%s\",\"text\":\"long\","
                  "\"embedding\":[0,1,0]}]}", shortid, longid) > 0);
  th_http r = as(&s, "POST", "/v1/documents", NULL, body);
  ASSERT_HTTP(r, 200);
  ASSERT_CONTAINS(r.body, "\"inserted\":2");
  th_http_free(&r);
  free(body);
  char *path;
  ASSERT(asprintf(&path, "/v1/documents/%s", longid) > 0);
  r = th_get(&s, path, NULL);
  ASSERT_HTTP(r, 200);
  ASSERT_CONTAINS(r.body, "\"text\":\"long\"");
  th_http_free(&r);
  r = as(&s, "DELETE", path, NULL, NULL);
  ASSERT_HTTP(r, 200);
  th_http_free(&r);
  free(path);
  /* The long one went, the short one stays. */
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings WHERE length(id) = 500"), 0);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings WHERE length(id) = 241"), 1);
  /* A path longer than any id the store takes is still routed whole: a
   * 404, not the document of a prefix. */
  char huge[2100];
  memset(huge, 'x', sizeof huge - 1);
  huge[sizeof huge - 1] = '\0';
  ASSERT(asprintf(&path, "/v1/documents/%s", huge) > 0);
  r = th_get(&s, path, NULL);
  ASSERT(r.status == 404 || r.status == 400 || r.status == 414);
  th_http_free(&r);
  free(path);
  ASSERT_INT_EQ(th_serve_stop(&s), 0);
}

TEST(serve_tenant_ingest_cannot_write_over_another_workspaces_document) {
  init_store();
  th_server s = start_with_tenants();
  th_http r = as(&s, "POST", "/v1/documents", TENANT2,
                 "{\"documents\":[{\"id\":\"theirs\",\"text\":\"secret of w2\","
                 "\"embedding\":[0,1,0],\"chunks\":[{\"id\":\"theirs-c0\","
                 "\"text\":\"chunk of w2\"}]}]}");
  ASSERT_HTTP(r, 200);
  ASSERT_CONTAINS(r.body, "\"inserted\":1");
  th_http_free(&r);
  /* The tenant of w1 sends the same id (with no workspace, so its own,
   * and with one naming w1): neither may replace w2's document. */
  r = as(&s, "POST", "/v1/documents", TENANT1,
         "{\"documents\":[{\"id\":\"theirs\",\"text\":\"overwritten\","
         "\"embedding\":[1,0,0]},{\"id\":\"mine\",\"embedding\":[1,1,0]},"
         "{\"id\":\"theirs\",\"text\":\"again\",\"embedding\":[1,0,0],"
         "\"metadata\":{\"workspace\":\"w1\"}}]}");
  ASSERT_HTTP(r, 200);
  json_t *j = body_json(&r);
  ASSERT_INT_EQ(json_integer_value(json_object_get(j, "inserted")), 1);
  ASSERT_INT_EQ(json_integer_value(json_object_get(j, "updated")), 0);
  ASSERT_INT_EQ(json_integer_value(json_object_get(j, "failed")), 2);
  json_t *e0 = json_array_get(json_object_get(j, "errors"), 0);
  ASSERT_STR_EQ(json_string_value(json_object_get(e0, "id")), "theirs");
  ASSERT_CONTAINS(json_string_value(json_object_get(e0, "error")),
                  "may not write");
  json_decref(j);
  th_http_free(&r);
  /* The NDJSON stream, too. */
  char auth[128];
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", TENANT1);
  const char *nd[] = {"Content-Type: application/x-ndjson", auth, NULL};
  static const char line[] = "{\"id\":\"theirs\",\"text\":\"streamed over\","
                             "\"embedding\":[1,0,0]}\n";
  r = th_request(&s, "POST", "/v1/documents", nd, line, strlen(line));
  ASSERT_HTTP(r, 200);
  ASSERT_CONTAINS(r.body, "\"failed\":1");
  th_http_free(&r);
  ASSERT_SQL_STR("SELECT metadata->>'workspace' || ' ' || text FROM embeddings "
                 "WHERE id = 'theirs'", "w2 secret of w2");
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM chunks WHERE document_id = 'theirs'"), 1);
  /* A document without an id, or with one too long, is still only its
   * own failure. */
  char *bad;
  char longid[600];
  memset(longid, 'y', sizeof longid - 1);
  longid[sizeof longid - 1] = '\0';
  ASSERT(asprintf(&bad, "{\"documents\":[{\"embedding\":[1,0,0]},{\"id\":"
                  "\"%s\",\"embedding\":[1,0,0]},{\"id\":\"mine2\","
                  "\"embedding\":[1,0,0]}]}", longid) > 0);
  r = as(&s, "POST", "/v1/documents", TENANT1, bad);
  free(bad);
  ASSERT_HTTP(r, 200);
  ASSERT_CONTAINS(r.body, "\"inserted\":1,");
  ASSERT_CONTAINS(r.body, "\"failed\":2,");
  th_http_free(&r);
  /* A writer for every workspace still updates it. */
  r = as(&s, "POST", "/v1/documents", WRITER,
         "{\"documents\":[{\"id\":\"theirs\",\"text\":\"by the writer\","
         "\"embedding\":[0,1,0],\"metadata\":{\"workspace\":\"w2\"}}]}");
  ASSERT_HTTP(r, 200);
  ASSERT_CONTAINS(r.body, "\"updated\":1");
  th_http_free(&r);
  ASSERT_INT_EQ(th_serve_stop(&s), 0);
}

TEST(serve_tenant_errors_never_name_another_tenants_document) {
  init_store();
  th_server s = start_with_tenants();
  th_http r = as(&s, "POST", "/v1/documents", TENANT2,
                 "{\"documents\":[{\"id\":\"private-name-of-w2\",\"embedding\":"
                 "[0,1,0],\"chunks\":[{\"id\":\"guessable\",\"text\":\"x\"}]}]}");
  ASSERT_HTTP(r, 200);
  ASSERT_CONTAINS(r.body, "\"chunks_written\":1");
  th_http_free(&r);
  /* The tenant of w1 claims the chunk id: refused, without learning
   * whose it is. */
  r = as(&s, "POST", "/v1/documents", TENANT1,
         "{\"documents\":[{\"id\":\"mine\",\"embedding\":[1,0,0],"
         "\"chunks\":[{\"id\":\"guessable\",\"text\":\"y\"}]}]}");
  ASSERT_HTTP(r, 200);
  ASSERT_CONTAINS(r.body, "\"failed\":1");
  ASSERT_CONTAINS(r.body, "guessable");
  if (strstr(r.body, "private-name-of-w2"))
    FAIL("the answer names w2's document: %s", r.body);
  th_http_free(&r);
  ASSERT_SQL_STR("SELECT document_id || ' ' || text FROM chunks WHERE id = 'guessable'",
                 "private-name-of-w2 x");
  ASSERT_INT_EQ(th_serve_stop(&s), 0);
}

TEST(serve_reads_member_names_written_with_escapes) {
  init_store();
  th_server s = th_serve_start(NULL, NULL);
  /* Valid JSON: "vec\u0074or" is "vector", "docum\u0065nts" is
   * "documents". */
  th_http r = as(&s, "POST", "/v1/documents", NULL,
                 "{\"docum\\u0065nts\":[{\"id\":\"e1\",\"embedding\":[1,0,0]}]}");
  ASSERT_HTTP(r, 200);
  ASSERT_CONTAINS(r.body, "\"inserted\":1");
  th_http_free(&r);
  r = as(&s, "POST", "/v1/search", NULL, "{\"vec\\u0074or\":[1,0,0],\"k\":1}");
  ASSERT_HTTP(r, 200);
  ASSERT_CONTAINS(r.body, "\"e1\"");
  th_http_free(&r);
  /* The same member twice, once escaped: refused as a duplicate. */
  r = as(&s, "POST", "/v1/search", NULL,
         "{\"vector\":[0,1,0],\"vec\\u0074or\":[1,0,0]}");
  ASSERT_HTTP(r, 400);
  th_http_free(&r);
  ASSERT_INT_EQ(th_serve_stop(&s), 0);
}

TEST(serve_answers_head_where_it_answers_get) {
  init_store();
  th_server s = start_with_tenants();
  /* HTTP/1.1 servers must take HEAD wherever they take GET (RFC 9110
   * 9.1): load balancers probe /healthz so. */
  th_http r = th_request(&s, "HEAD", "/healthz", NULL, NULL, 0);
  ASSERT_HTTP(r, 200);
  ASSERT_INT_EQ((long long)r.len, 0);
  th_http_free(&r);
  /* The same token rules as GET. */
  r = th_request(&s, "HEAD", "/v1/stats?workspace=w1", NULL, NULL, 0);
  ASSERT_HTTP(r, 401);
  th_http_free(&r);
  char auth[128];
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", TENANT1);
  const char *h[] = {auth, NULL};
  r = th_request(&s, "HEAD", "/v1/stats", h, NULL, 0);
  ASSERT_HTTP(r, 200);
  th_http_free(&r);
  /* Still no HEAD where there is no GET. */
  r = th_request(&s, "HEAD", "/v1/search", h, NULL, 0);
  ASSERT_HTTP(r, 405);
  th_http_free(&r);
  ASSERT_INT_EQ(th_serve_stop(&s), 0);
}
