/* test_serve.c - `embstore serve` through real sockets with a real client
 * (libcurl), on a real PostgreSQL: every route, the refusals, tokens and
 * tenants, percent-decoded ids, the OpenAPI file. */
#define _GNU_SOURCE
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "http.h"
#include "test.h"

static json_t *body_json(const th_http *r) {
  json_error_t e;
  json_t *j = json_loadb(r->body, r->len, 0, &e);
  if (j == NULL)
    FAIL("not JSON (%s): %.300s", e.text, r->body);
  return j;
}

/* The "error" object's "status" of an answer. */
static const char *error_status(json_t *j) {
  return json_string_value(json_object_get(json_object_get(j, "error"), "status"));
}

static const char docs_ndjson[] =
    "{\"id\":\"a/b c\",\"text\":\"alpha\",\"embedding\":[1,0,0],"
    "\"source_id\":\"s1\",\"metadata\":{\"workspace\":\"w1\"},"
    "\"chunks\":[{\"id\":\"a0\",\"text\":\"x\"},{\"id\":\"a1\",\"text\":\"y\"}]}\n"
    "{\"id\":\"b\",\"text\":\"beta\",\"embedding\":[0,1,0],\"source_id\":\"s1\","
    "\"metadata\":{\"workspace\":\"w2\"}}\n"
    "not json\n"
    "{\"id\":\"c\",\"text\":\"gamma\",\"embedding\":[0,0,1],\"source_id\":\"s2\"}";

/* Initialises the test's store (3 dimensions) through the tool. */
static void init_store(void) {
  const char *argv[] = {"--db", th_conninfo(), "init", "--dim", "3", NULL};
  th_proc p = th_cli(NULL, argv);
  ASSERT_INT_EQ(p.status, 0);
  th_proc_free(&p);
}

/* The tool's --json output of args on this test's database. */
static char *tool_json(const char *const *args) {
  const char *argv[16] = {"--db", th_conninfo()};
  size_t n = 2;
  for (size_t i = 0; args[i]; i++)
    argv[n++] = args[i];
  argv[n] = NULL;
  th_proc p = th_cli(NULL, argv);
  ASSERT_INT_EQ(p.status, 0);
  char *out = p.out;
  p.out = NULL;
  th_proc_free(&p);
  return out;
}

TEST(serve_answers_every_route_as_the_tool_does) {
  init_store();
  th_server s = th_serve_start(NULL, NULL);
  th_http r = th_get(&s, "/healthz", NULL);
  ASSERT_HTTP(r, 200);
  ASSERT_STR_EQ(r.body, "{\"status\":\"ok\"}\n");
  th_http_free(&r);
  r = th_get(&s, "/readyz", NULL);
  ASSERT_HTTP(r, 200);
  th_http_free(&r);

  const char *nd[] = {"Content-Type: application/x-ndjson", NULL};
  r = th_request(&s, "POST", "/v1/documents", nd, docs_ndjson, strlen(docs_ndjson));
  ASSERT_HTTP(r, 200);
  json_t *j = body_json(&r);
  ASSERT_INT_EQ(json_integer_value(json_object_get(j, "inserted")), 3);
  ASSERT_INT_EQ(json_integer_value(json_object_get(j, "failed")), 1);
  ASSERT_INT_EQ(json_integer_value(json_object_get(j, "chunks_written")), 2);
  json_t *e0 = json_array_get(json_object_get(j, "errors"), 0);
  ASSERT_INT_EQ(json_integer_value(json_object_get(e0, "line")), 3);
  ASSERT(json_is_object(json_object_get(j, "index")));
  json_decref(j);
  th_http_free(&r);

  /* The same document again, as application/json: unchanged. */
  static const char again[] =
      "{\"documents\":[{\"id\":\"c\",\"text\":\"gamma\",\"embedding\":[0,0,1],"
      "\"source_id\":\"s2\"},{\"id\":\"d\",\"embedding\":[1,1,0.5]}]}";
  r = th_post_json(&s, "/v1/documents", again, NULL);
  ASSERT_HTTP(r, 200);
  j = body_json(&r);
  ASSERT_INT_EQ(json_integer_value(json_object_get(j, "unchanged")), 1);
  ASSERT_INT_EQ(json_integer_value(json_object_get(j, "inserted")), 1);
  json_decref(j);
  th_http_free(&r);

  /* Search, get, stats: byte for byte what the tool prints. */
  r = th_post_json(&s, "/v1/search", "{\"vector\":[1,0.25,0],\"k\":3}", NULL);
  ASSERT_HTTP(r, 200);
  char *tool = tool_json((const char *const[]){"search", "--vector", "[1,0.25,0]",
                                               "-k", "3", "--json", NULL});
  ASSERT_STR_EQ(r.body, tool);
  free(tool);
  th_http_free(&r);
  r = th_post_json(&s, "/v1/search", "{\"like\":\"b\",\"k\":2,\"source\":\"s1\"}", NULL);
  ASSERT_HTTP(r, 200);
  j = body_json(&r);
  json_t *hits = json_object_get(j, "results");
  ASSERT_INT_EQ(json_array_size(hits), 1);
  ASSERT_STR_EQ(json_string_value(json_object_get(json_array_get(hits, 0), "id")),
                "a/b c");
  json_decref(j);
  th_http_free(&r);

  r = th_get(&s, "/v1/documents/a%2Fb%20c?include=embedding", NULL);
  ASSERT_HTTP(r, 200);
  tool = tool_json((const char *const[]){"get", "a/b c", "--embedding", "--json", NULL});
  ASSERT_STR_EQ(r.body, tool);
  free(tool);
  th_http_free(&r);

  r = th_get(&s, "/v1/stats?workspace=w1", NULL);
  ASSERT_HTTP(r, 200);
  j = body_json(&r);
  ASSERT_INT_EQ(json_integer_value(json_object_get(j, "documents")), 1);
  ASSERT_INT_EQ(json_integer_value(json_object_get(j, "chunks")), 2);
  json_t *tj;
  tool = tool_json((const char *const[]){"stats", "--workspace", "w1", "--json", NULL});
  json_error_t je;
  tj = json_loads(tool, 0, &je);
  /* The same fields (performance figures move between the two calls),
   * and the server's own cache, which a one-shot tool does not have. */
  const char *key;
  json_t *v;
  ASSERT(json_is_object(json_object_get(j, "server_cache")));
  ASSERT(json_object_get(tj, "server_cache") == NULL);
  ASSERT_INT_EQ(json_object_size(j), json_object_size(tj) + 1);
  json_object_foreach(tj, key, v) ASSERT(json_object_get(j, key) != NULL);
  json_decref(tj);
  json_decref(j);
  free(tool);
  th_http_free(&r);

  r = th_post_json(&s, "/v1/cleanup", "{\"dry_run\":true,\"min_age\":\"1h\"}", NULL);
  ASSERT_HTTP(r, 200);
  j = body_json(&r);
  ASSERT(json_is_true(json_object_get(j, "dry_run")));
  json_decref(j);
  th_http_free(&r);
  r = th_get(&s, "/v1/metrics?since=1h", NULL);
  ASSERT_HTTP(r, 200);
  j = body_json(&r);
  ASSERT_INT_EQ(json_integer_value(json_object_get(j, "since_s")), 3600);
  ASSERT(json_array_size(json_object_get(j, "operations")) > 0);
  json_decref(j);
  th_http_free(&r);

  /* Deletes: dry run, one document, a source; then 404. */
  r = th_request(&s, "DELETE", "/v1/documents/a%2Fb%20c?dry_run=true", NULL, NULL, 0);
  ASSERT_HTTP(r, 200);
  ASSERT_STR_EQ(r.body, "{\"deleted\":1,\"chunks_removed\":2,\"dry_run\":true}\n");
  th_http_free(&r);
  r = th_request(&s, "DELETE", "/v1/documents/a%2Fb%20c?cascade=false", NULL, NULL, 0);
  ASSERT_HTTP(r, 409); /* it has chunks */
  th_http_free(&r);
  r = th_request(&s, "DELETE", "/v1/documents/a%2Fb%20c", NULL, NULL, 0);
  ASSERT_HTTP(r, 200);
  ASSERT_STR_EQ(r.body, "{\"deleted\":1,\"chunks_removed\":2,\"dry_run\":false}\n");
  th_http_free(&r);
  r = th_get(&s, "/v1/documents/a%2Fb%20c", NULL);
  ASSERT_HTTP(r, 404);
  j = body_json(&r);
  ASSERT_STR_EQ(error_status(j), "ES_ENOTFOUND");
  json_decref(j);
  th_http_free(&r);
  r = th_request(&s, "DELETE", "/v1/documents/a%2Fb%20c", NULL, NULL, 0);
  ASSERT_HTTP(r, 404);
  th_http_free(&r);
  r = th_request(&s, "DELETE", "/v1/sources/s2", NULL, NULL, 0);
  ASSERT_HTTP(r, 200);
  ASSERT_STR_EQ(r.body, "{\"deleted\":1,\"chunks_removed\":0,\"dry_run\":false}\n");
  th_http_free(&r);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings"), 2);

  /* Prometheus: the requests above, the pool, the cache, the counts. */
  r = th_get(&s, "/metrics", NULL);
  ASSERT_HTTP(r, 200);
  char *type = th_http_header(&r, "Content-Type");
  ASSERT_CONTAINS(type, "text/plain; version=0.0.4");
  free(type);
  ASSERT_CONTAINS(r.body, "embstore_http_requests_total{route=\"/v1/search\",status=\"200\"} 2\n");
  ASSERT_CONTAINS(r.body, "embstore_http_requests_total{route=\"/v1/documents/{id}\",status=\"404\"} 2\n");
  ASSERT_CONTAINS(r.body, "embstore_http_request_duration_seconds_count{route=\"/v1/search\"} 2\n");
  ASSERT_CONTAINS(r.body, "embstore_documents 2\n");
  ASSERT_CONTAINS(r.body, "embstore_pool_size 16\n");
  ASSERT_CONTAINS(r.body, "embstore_operation_duration_milliseconds{operation=\"search\",quantile=\"0.99\"}");
  th_http_free(&r);

  ASSERT_INT_EQ(th_serve_stop(&s), 0);
  /* One access-log line a request, with the request id and no token. */
  char *log = th_serve_log(&s);
  ASSERT_CONTAINS(log, "\"route\":\"/v1/documents/{id}\",\"status\":404");
  ASSERT_CONTAINS(log, "embstore serve: stopped");
  free(log);
}

TEST(serve_refuses_what_it_cannot_take_before_reading_the_body) {
  init_store();
  th_server s = th_serve_start(NULL, (const char *const[]){"--max-body-mb", "1", NULL});
  th_http r = th_get(&s, "/v2/nothing", NULL);
  ASSERT_HTTP(r, 404);
  th_http_free(&r);
  r = th_request(&s, "PUT", "/v1/documents/x", NULL, NULL, 0);
  ASSERT_HTTP(r, 405);
  char *allow = th_http_header(&r, "Allow");
  ASSERT_STR_EQ(allow, "GET, DELETE");
  free(allow);
  th_http_free(&r);
  const char *text[] = {"Content-Type: text/plain", NULL};
  r = th_request(&s, "POST", "/v1/search", text, "{}", 2);
  ASSERT_HTTP(r, 415);
  th_http_free(&r);
  r = th_post_json(&s, "/v1/search", "{\"vector\": [1, 2,, 3]}", NULL);
  ASSERT_HTTP(r, 400);
  ASSERT_CONTAINS(r.body, "invalid JSON at byte 18");
  th_http_free(&r);
  r = th_post_json(&s, "/v1/search", "{\"vector\":[1,0],\"kk\":3}", NULL);
  ASSERT_HTTP(r, 400);
  ASSERT_CONTAINS(r.body, "unknown field \\\"kk\\\"");
  th_http_free(&r);
  r = th_post_json(&s, "/v1/search", "{\"vector\":[1,0]}", NULL);
  ASSERT_HTTP(r, 400);
  ASSERT_CONTAINS(r.body, "ES_EDIM");
  th_http_free(&r);
  r = th_post_json(&s, "/v1/search", "{\"vector\":[1,\"x\",0]}", NULL);
  ASSERT_HTTP(r, 400);
  ASSERT_CONTAINS(r.body, "vector[1]");
  th_http_free(&r);
  /* A vector jansson does not read (the fast path) is refused as the full
   * parse refuses it: a duplicate member, a number no double holds, and
   * what follows the array all still count. */
  r = th_post_json(&s, "/v1/search", "{\"vector\":[1,0],\"vector\":[0,1]}", NULL);
  ASSERT_HTTP(r, 400);
  ASSERT_CONTAINS(r.body, "duplicate object key");
  th_http_free(&r);
  r = th_post_json(&s, "/v1/search", "{\"vector\":[1e400,0]}", NULL);
  ASSERT_HTTP(r, 400);
  ASSERT_CONTAINS(r.body, "invalid JSON at byte");
  th_http_free(&r);
  r = th_post_json(&s, "/v1/search", "{\"vector\":[1,0]]}", NULL);
  ASSERT_HTTP(r, 400);
  ASSERT_CONTAINS(r.body, "invalid JSON at byte 16");
  th_http_free(&r);
  r = th_post_json(&s, "/v1/search", "{\"vector\":[1,0],\"like\":\"a\"}", NULL);
  ASSERT_HTTP(r, 400);
  ASSERT_CONTAINS(r.body, "give either");
  th_http_free(&r);
  r = th_get(&s, "/v1/documents/%ZZ", NULL);
  ASSERT_HTTP(r, 400);
  th_http_free(&r);
  /* Declared too large: refused at once, before any of it is sent.  The
   * client asks for 100-continue, as a client with a large upload should:
   * one that sends regardless may see its connection cut before it reads
   * the answer (the CI run that showed it: "Failed sending data"). */
  size_t big = (size_t)2 << 20;
  char *body = malloc(big);
  memset(body, ' ', big);
  const char *nd[] = {"Content-Type: application/x-ndjson",
                      "Expect: 100-continue", NULL};
  r = th_request(&s, "POST", "/v1/documents", nd, body, big);
  ASSERT_HTTP(r, 413);
  ASSERT_CONTAINS(r.body, "ES_ETOOLARGE");
  th_http_free(&r);
  /* Chunked, no length: a 413 where libmicrohttpd can send one, else the
   * connection cut once the limit is passed; never read to its end. */
  const char *chunked[] = {"Content-Type: application/x-ndjson",
                           "Transfer-Encoding: chunked", NULL};
  r = th_request(&s, "POST", "/v1/documents", chunked, body, big);
  ASSERT(r.status == 413 || r.status == 0);
  th_http_free(&r);
  free(body);
  ASSERT_INT_EQ(th_serve_stop(&s), 0);
  char *log = th_serve_log(&s);
  ASSERT_CONTAINS(log, "\"route\":\"/v1/documents\",\"status\":413");
  /* The chunked one, too: logged as 413 (its connection was cut). */
  char *first = strstr(log, "\"status\":413");
  ASSERT(first && strstr(first + 1, "\"status\":413"));
  free(log);
}

/* A tokens file in the test's directory, mode 0600. */
static char *tokens_file(const char *text) {
  char *path;
  ASSERT(asprintf(&path, "%s/tokens", th_tmpdir()) > 0);
  FILE *f = fopen(path, "w");
  ASSERT(f != NULL);
  fputs(text, f);
  ASSERT_INT_EQ(fclose(f), 0);
  ASSERT_INT_EQ(chmod(path, 0600), 0);
  return path;
}

/* A request with a bearer token, and its status. */
static long call(const th_server *s, const char *method, const char *path,
                 const char *token, const char *json) {
  char auth[256];
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
  const char *h[] = {auth, "Content-Type: application/json", NULL};
  th_http r = th_request(s, method, path, token ? h : h + 1, json,
                         json ? strlen(json) : 0);
  long st = r.status;
  th_http_free(&r);
  return st;
}

#define READER "reader-token-0123456789"
#define WRITER "writer-token-0123456789"
#define ADMIN "admin-token-0123456789ab"
#define TENANT "tenant-w1-token-0123456"
#define TENANT2 "tenant-w1w2-token-01234"

TEST(serve_tokens_give_roles_and_tenants_see_only_their_workspaces) {
  init_store();
  /* The admin's line holds only its digest, as `embstore token new`
   * writes it. */
  const char *tn[] = {"token", "new", "admin", "*", "--json", NULL};
  th_proc p = th_cli(NULL, tn);
  ASSERT_INT_EQ(p.status, 0);
  json_error_t je;
  json_t *tj = json_loads(p.out, 0, &je);
  const char *fresh = json_string_value(json_object_get(tj, "token"));
  const char *line = json_string_value(json_object_get(tj, "line"));
  ASSERT(fresh && strncmp(fresh, "es_", 3) == 0 && strlen(fresh) == 46);
  ASSERT(line && strncmp(line, "sha256:", 7) == 0);
  char *text;
  ASSERT(asprintf(&text, "# tokens of the test\n" READER " read *\n" WRITER
                  " write * the-writer\n%s\n" TENANT " write w1 tenant-one\n"
                  TENANT2 " read w1,w2\n", line) > 0);
  char *path = tokens_file(text);
  free(text);
  char *admin = strdup(fresh);
  json_decref(tj);
  th_proc_free(&p);

  th_server s = th_serve_start(NULL, (const char *const[]){"--tokens", path, NULL});
  /* No token, an unknown one: 401; health needs none. */
  ASSERT_INT_EQ(call(&s, "GET", "/healthz", NULL, NULL), 200);
  ASSERT_INT_EQ(call(&s, "GET", "/v1/stats", NULL, NULL), 401);
  ASSERT_INT_EQ(call(&s, "GET", "/v1/stats", "not-a-token-at-all", NULL), 401);
  /* The role matrix. */
  static const char ingest[] =
      "{\"documents\":[{\"id\":\"d1\",\"embedding\":[1,0,0],\"metadata\":"
      "{\"workspace\":\"w1\"}},{\"id\":\"d2\",\"embedding\":[0,1,0],"
      "\"metadata\":{\"workspace\":\"w2\"}}]}";
  ASSERT_INT_EQ(call(&s, "POST", "/v1/documents", READER, ingest), 403);
  ASSERT_INT_EQ(call(&s, "POST", "/v1/documents", WRITER, ingest), 200);
  ASSERT_INT_EQ(call(&s, "POST", "/v1/search", READER, "{\"vector\":[1,0,0]}"), 200);
  ASSERT_INT_EQ(call(&s, "GET", "/v1/documents/d1", READER, NULL), 200);
  ASSERT_INT_EQ(call(&s, "DELETE", "/v1/documents/d1?dry_run=true", READER, NULL), 403);
  ASSERT_INT_EQ(call(&s, "DELETE", "/v1/documents/d1?dry_run=true", WRITER, NULL), 200);
  ASSERT_INT_EQ(call(&s, "POST", "/v1/cleanup", WRITER, "{\"dry_run\":true}"), 403);
  ASSERT_INT_EQ(call(&s, "POST", "/v1/cleanup", admin, "{\"dry_run\":true}"), 200);
  ASSERT_INT_EQ(call(&s, "GET", "/v1/metrics", WRITER, NULL), 403);
  ASSERT_INT_EQ(call(&s, "GET", "/v1/metrics", admin, NULL), 200);
  ASSERT_INT_EQ(call(&s, "GET", "/metrics", READER, NULL), 403);
  ASSERT_INT_EQ(call(&s, "GET", "/v1/stats", READER, NULL), 403); /* unscoped */
  ASSERT_INT_EQ(call(&s, "GET", "/v1/stats?workspace=w2", READER, NULL), 200);
  ASSERT_INT_EQ(call(&s, "GET", "/v1/stats", admin, NULL), 200);

  /* The tenant: another workspace's document does not exist for it. */
  ASSERT_INT_EQ(call(&s, "GET", "/v1/documents/d1", TENANT, NULL), 200);
  th_http r = th_get(&s, "/v1/documents/d2", TENANT);
  th_http missing = th_get(&s, "/v1/documents/nope", TENANT);
  ASSERT_HTTP(r, 404);
  ASSERT_HTTP(missing, 404);
  /* Exactly as if it did not exist: the same message but for the id. */
  char *m1 = strstr(r.body, "no document with id"), *m2 = strstr(missing.body, "no document with id");
  ASSERT(m1 && m2);
  th_http_free(&r);
  th_http_free(&missing);
  ASSERT_INT_EQ(call(&s, "DELETE", "/v1/documents/d2", TENANT, NULL), 404);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings WHERE id = 'd2'"), 1);
  ASSERT_INT_EQ(call(&s, "POST", "/v1/search", TENANT, "{\"like\":\"d2\"}"), 404);
  ASSERT_INT_EQ(call(&s, "POST", "/v1/search", TENANT,
                     "{\"vector\":[0,1,0],\"workspace\":\"w2\"}"), 403);
  r = th_post_json(&s, "/v1/search", "{\"vector\":[0,1,0],\"k\":5}", TENANT);
  ASSERT_HTTP(r, 200);
  ASSERT_CONTAINS(r.body, "\"d1\"");
  ASSERT(strstr(r.body, "\"d2\"") == NULL);
  th_http_free(&r);
  r = th_get(&s, "/v1/stats", TENANT);
  ASSERT_HTTP(r, 200);
  ASSERT_CONTAINS(r.body, "\"workspace\":\"w1\",\"documents\":1,");
  th_http_free(&r);
  ASSERT_INT_EQ(call(&s, "GET", "/v1/stats?workspace=w2", TENANT, NULL), 403);
  ASSERT_INT_EQ(call(&s, "POST", "/v1/cleanup", TENANT, "{}"), 403);

  /* Its ingest: another workspace is a per-item error; none gets w1. */
  static const char mixed[] =
      "{\"documents\":[{\"id\":\"t1\",\"embedding\":[1,1,0]},"
      "{\"id\":\"t2\",\"embedding\":[1,0,1],\"metadata\":{\"workspace\":\"w2\"}}]}";
  r = th_post_json(&s, "/v1/documents", mixed, TENANT);
  ASSERT_HTTP(r, 200);
  json_t *j = body_json(&r);
  ASSERT_INT_EQ(json_integer_value(json_object_get(j, "inserted")), 1);
  ASSERT_INT_EQ(json_integer_value(json_object_get(j, "failed")), 1);
  json_t *e0 = json_array_get(json_object_get(j, "errors"), 0);
  ASSERT_STR_EQ(json_string_value(json_object_get(e0, "id")), "t2");
  ASSERT_INT_EQ(json_integer_value(json_object_get(e0, "line")), 2);
  ASSERT_CONTAINS(json_string_value(json_object_get(e0, "error")), "\"w2\" is not one");
  json_decref(j);
  th_http_free(&r);
  ASSERT_SQL_STR("SELECT metadata->>'workspace' FROM embeddings WHERE id = 't1'", "w1");
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings WHERE id = 't2'"), 0);
  /* A tenant of two workspaces must name one where it matters. */
  ASSERT_INT_EQ(call(&s, "GET", "/v1/stats", TENANT2, NULL), 400);
  ASSERT_INT_EQ(call(&s, "GET", "/v1/stats?workspace=w2", TENANT2, NULL), 200);
  ASSERT_INT_EQ(call(&s, "GET", "/v1/documents/d2", TENANT2, NULL), 200);

  ASSERT_INT_EQ(th_serve_stop(&s), 0);
  /* Tokens never show in the log; their names do. */
  char *log = th_serve_log(&s);
  ASSERT(strstr(log, READER) == NULL && strstr(log, WRITER) == NULL &&
         strstr(log, TENANT) == NULL && strstr(log, admin) == NULL);
  ASSERT_CONTAINS(log, "\"token\":\"the-writer\"");
  ASSERT_CONTAINS(log, "\"token\":\"tenant-one\"");
  free(log);
  free(admin);
  free(path);
}

TEST(serve_refuses_to_start_where_it_would_be_unsafe) {
  init_store();
  const char *open_all[] = {"--db", th_conninfo(), "serve", "--listen", "0.0.0.0:0", NULL};
  th_proc p = th_cli(NULL, open_all);
  ASSERT_INT_EQ(p.status, 2);
  ASSERT_CONTAINS(p.err, "without --tokens the server listens only on a loopback");
  th_proc_free(&p);
  char *path = tokens_file(READER " read *\n");
  ASSERT_INT_EQ(chmod(path, 0640), 0);
  const char *readable[] = {"--db", th_conninfo(), "serve", "--tokens", path, NULL};
  p = th_cli(NULL, readable);
  ASSERT_INT_EQ(p.status, 2);
  ASSERT_CONTAINS(p.err, "may be read by group or others (mode 640)");
  th_proc_free(&p);
  free(path);
  path = tokens_file(READER " reader *\n");
  const char *bad[] = {"--db", th_conninfo(), "serve", "--tokens", path, NULL};
  p = th_cli(NULL, bad);
  ASSERT_INT_EQ(p.status, 2);
  ASSERT_CONTAINS(p.err, "line 1: ROLE must be read, write or admin");
  ASSERT(strstr(p.err, READER) == NULL);
  th_proc_free(&p);
  free(path);
}

TEST(serve_readyz_answers_503_until_the_store_exists) {
  th_server s = th_serve_start(NULL, NULL);
  th_http r = th_get(&s, "/readyz", NULL);
  ASSERT_HTTP(r, 503);
  ASSERT_CONTAINS(r.body, "ES_ENOSTORE");
  th_http_free(&r);
  r = th_get(&s, "/healthz", NULL);
  ASSERT_HTTP(r, 200);
  th_http_free(&r);
  init_store();
  r = th_get(&s, "/readyz", NULL);
  ASSERT_HTTP(r, 200);
  th_http_free(&r);
  ASSERT_INT_EQ(th_serve_stop(&s), 0);
}

TEST(serve_openapi_lists_exactly_the_routes_it_serves) {
  init_store();
  th_server s = th_serve_start(NULL, NULL);
  th_http r = th_get(&s, "/v1/openapi.json", NULL);
  ASSERT_HTTP(r, 200);
  json_t *j = body_json(&r);
  ASSERT_CONTAINS(json_string_value(json_object_get(j, "openapi")), "3.1");
  json_t *paths = json_object_get(j, "paths");
  ASSERT(json_object_size(paths) >= 10);
  static const char *const methods[] = {"get", "post", "put", "delete", "patch"};
  const char *path;
  json_t *item;
  size_t n_ops = 0;
  json_object_foreach(paths, path, item) {
    /* A concrete path for the template: {id} -> an id. */
    char concrete[256];
    const char *brace = strchr(path, '{');
    snprintf(concrete, sizeof concrete, "%.*s%s", brace ? (int)(brace - path) : (int)strlen(path),
             path, brace ? "x" : "");
    char allow[64] = "";
    for (size_t m = 0; m < 5; m++) {
      char upper[8];
      for (size_t k = 0; k <= strlen(methods[m]); k++)
        upper[k] = (char)(methods[m][k] >= 'a' ? methods[m][k] - 32 : methods[m][k]);
      th_http x = th_request(&s, upper, concrete, NULL, NULL, 0);
      if (json_object_get(item, methods[m])) {
        n_ops++;
        if (x.status == 404 && strstr(x.body, "ES_ENOROUTE"))
          FAIL("%s %s is in the OpenAPI file but not served", upper, path);
        if (x.status == 405)
          FAIL("%s %s is in the OpenAPI file but answers 405", upper, path);
        snprintf(allow + strlen(allow), sizeof allow - strlen(allow), "%s%s",
                 allow[0] ? ", " : "", upper);
      } else if (x.status != 405) {
        FAIL("%s %s is served (%ld) but not in the OpenAPI file", upper, path,
             x.status);
      }
      th_http_free(&x);
    }
  }
  ASSERT_INT_EQ(n_ops, 17);
  json_decref(j);
  th_http_free(&r);
  ASSERT_INT_EQ(th_serve_stop(&s), 0);
}

/* The body of a request with a bearer token (NULL: none); fails unless
 * it answers want. */
static char *body_of(const th_server *s, const char *method, const char *path,
                     const char *token, const char *json, long want) {
  char auth[256];
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", token ? token : "");
  const char *h[] = {auth, "Content-Type: application/json", NULL};
  th_http r = th_request(s, method, path, token ? h : h + 1, json,
                         json ? strlen(json) : 0);
  if (r.status != want)
    FAIL("%s %s: HTTP %ld, want %ld: %s", method, path, r.status, want, r.body);
  char *out = r.body;
  r.body = NULL;
  th_http_free(&r);
  return out;
}

TEST(serve_lists_filters_and_deletes_by_filter_as_the_tool_does) {
  init_store();
  static const char docs[] =
      "{\"id\":\"e1\",\"text\":\"one\",\"embedding\":[1,0,0],\"source_id\":\"s1\","
      "\"metadata\":{\"workspace\":\"w1\",\"lang\":\"en\",\"tags\":[\"a\",\"b\"]},"
      "\"chunks\":[{\"id\":\"e1#0\",\"text\":\"x\"}]}\n"
      "{\"id\":\"e2\",\"text\":\"two\",\"embedding\":[0.9,0.1,0],\"source_id\":\"s1\","
      "\"metadata\":{\"workspace\":\"w2\",\"lang\":\"en\"}}\n"
      "{\"id\":\"f1\",\"text\":\"three\",\"embedding\":[0.8,0.2,0],\"source_id\":\"s2\","
      "\"metadata\":{\"workspace\":\"w1\",\"lang\":\"fr\",\"tags\":[\"a\"]}}\n"
      "{\"id\":\"f2\",\"text\":\"four\",\"embedding\":[0,1,0],\"source_id\":\"s2\","
      "\"metadata\":{\"workspace\":\"w1\",\"lang\":\"fr\"}}\n";
  const char *tn = "# tokens\n" ADMIN " admin *\n" TENANT " write w1 tenant-one\n";
  char *path = tokens_file(tn);
  th_server s = th_serve_start(NULL, (const char *const[]){"--tokens", path, NULL});
  const char *nd[] = {"Authorization: Bearer " ADMIN,
                      "Content-Type: application/x-ndjson", NULL};
  th_http r = th_request(&s, "POST", "/v1/documents", nd, docs, strlen(docs));
  ASSERT_HTTP(r, 200);
  th_http_free(&r);

  /* Listing: byte for byte the tool's, page by page. */
  char *got = body_of(&s, "GET", "/v1/documents?limit=2", ADMIN, NULL, 200);
  char *tool = tool_json((const char *const[]){"list", "--limit", "2", "--json", NULL});
  ASSERT_STR_EQ(got, tool);
  ASSERT_CONTAINS(got, "\"next_after\":\"e2\"");
  free(got);
  free(tool);
  got = body_of(&s, "GET", "/v1/documents?limit=2&after=e2&chunks=true", ADMIN,
                NULL, 200);
  tool = tool_json((const char *const[]){"list", "--limit", "2", "--after", "e2",
                                         "--chunks", "--json", NULL});
  ASSERT_STR_EQ(got, tool);
  free(got);
  free(tool);
  /* A filter in the query string, percent-encoded. */
  got = body_of(&s, "GET", "/v1/documents?filter=%7B%22tags%22%3A%5B%22a%22%5D%7D"
                "&chunks=true", ADMIN, NULL, 200);
  tool = tool_json((const char *const[]){"list", "--filter", "{\"tags\":[\"a\"]}",
                                         "--chunks", "--json", NULL});
  ASSERT_STR_EQ(got, tool);
  ASSERT_CONTAINS(got, "\"id\":\"e1#0\"");
  ASSERT_CONTAINS(got, "\"id\":\"f1\"");
  free(got);
  free(tool);
  got = body_of(&s, "GET", "/v1/documents?filter=%5B1%5D", ADMIN, NULL, 400);
  ASSERT_CONTAINS(got, "filter: not a JSON object (at byte 1)");
  free(got);
  got = body_of(&s, "GET", "/v1/documents?limit=0", ADMIN, NULL, 400);
  free(got);
  /* A tenant lists only its workspace; naming another is forbidden. */
  got = body_of(&s, "GET", "/v1/documents", TENANT, NULL, 200);
  ASSERT(strstr(got, "\"e2\"") == NULL);
  ASSERT_CONTAINS(got, "\"f2\"");
  free(got);
  free(body_of(&s, "GET", "/v1/documents?workspace=w2", TENANT, NULL, 403));

  /* Search with a filter, as the tool. */
  got = body_of(&s, "POST", "/v1/search", ADMIN,
                "{\"vector\":[1,0,0],\"k\":3,\"filter\":{\"lang\":\"fr\"}}", 200);
  tool = tool_json((const char *const[]){"search", "--vector", "[1,0,0]", "-k", "3",
                                         "--filter", "{\"lang\":\"fr\"}", "--json",
                                         NULL});
  ASSERT_STR_EQ(got, tool);
  ASSERT(strstr(got, "\"e1\"") == NULL);
  free(got);
  free(tool);
  got = body_of(&s, "POST", "/v1/search", ADMIN,
                "{\"vector\":[1,0,0],\"filter\":[\"lang\"]}", 400);
  ASSERT_CONTAINS(got, "field \\\"filter\\\" must be a JSON object");
  free(got);

  /* Text and hybrid search, as the tool. */
  got = body_of(&s, "POST", "/v1/search", ADMIN, "{\"text\":\"three OR four\"}", 200);
  tool = tool_json((const char *const[]){"search", "--text", "three OR four",
                                         "--json", NULL});
  ASSERT_STR_EQ(got, tool);
  ASSERT_CONTAINS(got, "\"text_rank\":1");
  free(got);
  free(tool);
  got = body_of(&s, "POST", "/v1/search", ADMIN,
                "{\"text\":\"three\",\"vector\":[1,0,0],\"rrf_k\":5,"
                "\"weights\":[1,3],\"k\":3}", 200);
  tool = tool_json((const char *const[]){"search", "--text", "three", "--vector",
                                         "[1,0,0]", "--rrf-k", "5", "--weights",
                                         "1,3", "-k", "3", "--json", NULL});
  ASSERT_STR_EQ(got, tool);
  ASSERT_CONTAINS(got, "\"id\":\"f1\"");
  free(got);
  free(tool);
  got = body_of(&s, "POST", "/v1/search", ADMIN,
                "{\"text\":\"three\",\"mode\":\"sideways\"}", 400);
  free(got);
  got = body_of(&s, "POST", "/v1/search", ADMIN,
                "{\"text\":\"three\",\"vector\":[1,0,0],\"weights\":[0,0]}", 400);
  free(got);

  /* Delete by filter: dry run, the tenant's scope, then for real. */
  got = body_of(&s, "POST", "/v1/delete", ADMIN,
                "{\"filter\":{\"lang\":\"en\"},\"dry_run\":true}", 200);
  ASSERT_STR_EQ(got, "{\"deleted\":2,\"chunks_removed\":1,\"dry_run\":true}\n");
  free(got);
  got = body_of(&s, "POST", "/v1/delete", ADMIN,
                "{\"filter\":{\"lang\":\"en\"},\"cascade\":false}", 409);
  ASSERT_CONTAINS(got, "ES_ECONFLICT");
  free(got);
  /* The tenant's delete of every "en" document reaches only w1's. */
  got = body_of(&s, "POST", "/v1/delete", TENANT,
                "{\"filter\":{\"lang\":\"en\"}}", 200);
  ASSERT_STR_EQ(got, "{\"deleted\":1,\"chunks_removed\":1,\"dry_run\":false}\n");
  free(got);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings WHERE id = 'e2'"), 1);
  free(body_of(&s, "POST", "/v1/delete", TENANT,
               "{\"filter\":{},\"all\":true,\"workspace\":\"w2\"}", 403));
  got = body_of(&s, "POST", "/v1/delete", ADMIN, "{\"filter\":{ }}", 400);
  ASSERT_CONTAINS(got, "matches every document");
  free(got);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings"), 3);
  got = body_of(&s, "POST", "/v1/delete", ADMIN, "{\"dry_run\":true}", 400);
  ASSERT_CONTAINS(got, "\\\"filter\\\" is required");
  free(got);
  got = body_of(&s, "POST", "/v1/delete", ADMIN,
                "{\"filter\":{},\"source\":\"s2\",\"workspace\":\"w1\"}", 200);
  ASSERT_STR_EQ(got, "{\"deleted\":2,\"chunks_removed\":0,\"dry_run\":false}\n");
  free(got);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings"), 1);
  ASSERT_INT_EQ(th_serve_stop(&s), 0);
  free(path);
}

TEST(serve_exports_as_the_tool_does_across_pages_and_within_a_tenant) {
  init_store();
  /* 1,203 documents: three pages of 500 and a part, chunks on some. */
  size_t cap = 1 << 20, len = 0;
  char *nd = malloc(cap);
  for (int i = 0; i < 1203; i++) {
    char ch[64] = "";
    if (i % 3 == 0)
      snprintf(ch, sizeof ch, ",\"chunks\":[{\"id\":\"x%04d#0\",\"text\":\"c\"}]", i);
    len += (size_t)snprintf(nd + len, cap - len,
                            "{\"id\":\"x%04d\",\"text\":\"t%d\",\"embedding\":[%d.5,0.25,-1],"
                            "\"metadata\":{\"workspace\":\"w%d\",\"n\":%d}%s}\n",
                            i, i, i % 7, i % 2, i, ch);
  }
  const char *ingest[] = {"--db", th_conninfo(), "ingest", "-", NULL};
  th_proc p = th_cli(nd, ingest);
  ASSERT_INT_EQ(p.status, 0);
  th_proc_free(&p);
  free(nd);
  const char *tn = "# tokens\n" ADMIN " admin *\n" TENANT " write w1 tenant-one\n";
  char *path = tokens_file(tn);
  th_server s = th_serve_start(NULL, (const char *const[]){"--tokens", path, NULL});
  char *got = body_of(&s, "GET", "/v1/export?embeddings=true", ADMIN, NULL, 200);
  const char *exp[] = {"--db", th_conninfo(), "export", "--embeddings", NULL};
  p = th_cli(NULL, exp);
  ASSERT_INT_EQ(p.status, 0);
  ASSERT_STR_EQ(got, p.out);
  size_t lines = 0;
  for (const char *q = got; *q; q++)
    lines += *q == '\n';
  ASSERT_INT_EQ((long long)lines, 1203);
  th_proc_free(&p);
  free(got);
  /* A tenant exports its own workspace only; a filter narrows it. */
  got = body_of(&s, "GET", "/v1/export", TENANT, NULL, 200);
  const char *exp2[] = {"--db", th_conninfo(), "export", "--workspace", "w1", NULL};
  p = th_cli(NULL, exp2);
  ASSERT_STR_EQ(got, p.out);
  ASSERT(strstr(got, "\"x0000\"") == NULL);
  ASSERT_CONTAINS(got, "\"x0001\"");
  th_proc_free(&p);
  free(got);
  got = body_of(&s, "GET", "/v1/export?filter=%7B%22n%22%3A7%7D", ADMIN, NULL, 200);
  ASSERT_STR_EQ(got, "{\"id\":\"x0007\",\"text\":\"t7\",\"metadata\":{\"n\": 7, "
                "\"workspace\": \"w1\"},\"source_id\":null}\n");
  free(got);
  got = body_of(&s, "GET", "/v1/export?filter=%7B", ADMIN, NULL, 400);
  ASSERT_CONTAINS(got, "ES_EINVAL");
  free(got);
  free(body_of(&s, "GET", "/v1/export?workspace=w0", TENANT, NULL, 403));
  ASSERT_INT_EQ(th_serve_stop(&s), 0);
  free(path);
}
