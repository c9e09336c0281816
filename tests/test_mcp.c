/* test_mcp.c - `embstore mcp` over its real stdio: the protocol's
 * lifecycle and errors, every tool against the real store, the read-only
 * tool list, and two servers storing into one store at once. */
#define _GNU_SOURCE
#include <jansson.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include <signal.h>
#include <sys/stat.h>

#include "http.h"
#include "provider.h"
#include "test.h"

#define DIM 3

/* The answers on stdout, by id (a JSON array of the lines). */
static json_t *answers(const char *out) {
  json_t *all = json_array();
  const char *p = out;
  while (p && *p) {
    const char *nl = strchr(p, '\n');
    size_t len = nl ? (size_t)(nl - p) : strlen(p);
    json_error_t je;
    json_t *j = json_loadb(p, len, 0, &je);
    if (j == NULL)
      FAIL("stdout holds a line that is not JSON: %.*s", (int)(len > 200 ? 200 : len), p);
    json_array_append_new(all, j);
    p = nl ? nl + 1 : NULL;
  }
  return all;
}

/* The answer with id (an integer), or fails. */
static json_t *by_id(json_t *all, long id) {
  size_t i;
  json_t *a;
  json_array_foreach(all, i, a) {
    json_t *v = json_object_get(a, "id");
    if (json_is_integer(v) && json_integer_value(v) == id)
      return a;
  }
  FAIL("no answer with id %ld", id);
  return NULL;
}

static const char *error_message(json_t *a) {
  return json_string_value(json_object_get(json_object_get(a, "error"), "message"));
}

static long long error_code(json_t *a) {
  return json_integer_value(json_object_get(json_object_get(a, "error"), "code"));
}

static json_t *structured(json_t *a) {
  json_t *r = json_object_get(a, "result");
  if (json_is_true(json_object_get(r, "isError")))
    FAIL("tool error: %s", json_string_value(json_object_get(
                               json_array_get(json_object_get(r, "content"), 0), "text")));
  return json_object_get(r, "structuredContent");
}

static th_proc run_mcp(const char *input, const char *extra) {
  const char *argv[] = {"--db", th_conninfo(), "mcp", extra, NULL};
  return th_cli(input, argv);
}

#define INIT                                                                   \
  "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{"     \
  "\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},\"clientInfo\":{"  \
  "\"name\":\"test\",\"version\":\"1\"}}}\n"                                 \
  "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n"

TEST(mcp_stdio_speaks_the_protocol_and_every_tool_works_on_the_store) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  es_close(s);
  const char *input =
      "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"tools/list\"}\n" INIT
      "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"}\n"
      "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{\"name\":"
      "\"store\",\"arguments\":{\"source_id\":\"notes\",\"workspace\":\"w\","
      "\"documents\":[{\"text\":\"the harbour lighthouse\",\"embedding\":[1,0,0.1]},"
      "{\"id\":\"b\",\"text\":\"mountain river\",\"embedding\":[0,1,0.3],"
      "\"chunks\":[{\"id\":\"b#0\",\"text\":\"river\",\"embedding\":[0,1,0]}]},"
      "{\"id\":\"c\",\"text\":\"bad\",\"embedding\":[1,2]}]}}}\n"
      "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"tools/call\",\"params\":{\"name\":"
      "\"search\",\"arguments\":{\"query\":\"lighthouse\"}}}\n"
      "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/call\",\"params\":{\"name\":"
      "\"search\",\"arguments\":{\"vector\":[0,1,0.25],\"k\":1,\"filter\":{\"workspace\":\"w\"}}}}\n"
      "{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"tools/call\",\"params\":{\"name\":"
      "\"get\",\"arguments\":{\"id\":\"b\"}}}\n"
      "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{\"name\":"
      "\"get\",\"arguments\":{\"id\":\"nope\"}}}\n"
      "{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"tools/call\",\"params\":{\"name\":"
      "\"list\",\"arguments\":{\"limit\":1}}}\n"
      "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/call\",\"params\":{\"name\":"
      "\"get_statistics\",\"arguments\":{}}}\n"
      "{\"jsonrpc\":\"2.0\",\"id\":10,\"method\":\"tools/call\",\"params\":{\"name\":"
      "\"delete_by_source\",\"arguments\":{\"source_id\":\"notes\",\"dry_run\":true}}}\n"
      "{\"jsonrpc\":\"2.0\",\"id\":11,\"method\":\"tools/call\",\"params\":{\"name\":"
      "\"delete\",\"arguments\":{\"ids\":[\"b\",\"zz\"]}}}\n"
      "{\"jsonrpc\":\"2.0\",\"id\":12,\"method\":\"tools/call\",\"params\":{\"name\":"
      "\"cleanup_orphaned\",\"arguments\":{\"min_age\":\"2h\"}}}\n"
      "{\"jsonrpc\":\"2.0\",\"id\":20,\"method\":\"tools/call\",\"params\":{\"name\":"
      "\"cleanup_orphaned\",\"arguments\":{\"min_age\":\"2 hours\"}}}\n"
      "{\"jsonrpc\":\"2.0\",\"id\":13,\"method\":\"resources/read\",\"params\":{"
      "\"uri\":\"embstore://sources\"}}\n"
      "{\"jsonrpc\":\"2.0\",\"id\":14,\"method\":\"no/such\"}\n"
      "not json at all\n"
      "{\"jsonrpc\":\"2.0\",\"id\":15,\"method\":\"tools/call\",\"params\":{\"name\":"
      "\"drop_everything\"}}\n"
      "{\"jsonrpc\":\"2.0\",\"id\":16,\"method\":\"ping\"}\n"
      "{\"jsonrpc\":\"2.0\",\"id\":17,\"method\":5}\n"
      /* a name cut by the message's limit in the middle of a character */
      "{\"jsonrpc\":\"2.0\",\"id\":18,\"method\":\"tools/call\",\"params\":{\"name\":"
      "\"a\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"
      "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"
      "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"
      "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9x\"}}\n"
      "{\"jsonrpc\":\"2.0\",\"id\":19}\n";
  th_proc p = run_mcp(input, NULL);
  ASSERT_INT_EQ(p.status, 0);
  ASSERT_CONTAINS(p.err, "no embedding provider"); /* start-up says which */
  json_t *all = answers(p.out);
  /* one answer a request (21) and the unparsable line; none for the
   * notification */
  ASSERT_INT_EQ((long long)json_array_size(all), 22);

  ASSERT_INT_EQ(error_code(by_id(all, 0)), -32600); /* before initialize */
  json_t *init = json_object_get(by_id(all, 1), "result");
  ASSERT_STR_EQ(json_string_value(json_object_get(init, "protocolVersion")), "2025-06-18");
  ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(init, "serverInfo"),
                                                  "name")), "embstore");

  json_t *tools = json_object_get(json_object_get(by_id(all, 2), "result"), "tools");
  ASSERT_INT_EQ((long long)json_array_size(tools), 8);
  static const char *const names[] = {"store", "search", "get", "list", "delete",
                                      "delete_by_source", "get_statistics",
                                      "cleanup_orphaned"};
  static const int read_only[] = {0, 1, 1, 1, 0, 0, 1, 0};
  for (size_t i = 0; i < 8; i++) {
    json_t *t = json_array_get(tools, i);
    ASSERT_STR_EQ(json_string_value(json_object_get(t, "name")), names[i]);
    ASSERT(json_is_object(json_object_get(t, "inputSchema")));
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(t, "outputSchema"),
                                                    "type")), "object");
    json_t *ann = json_object_get(t, "annotations");
    ASSERT_INT_EQ(json_is_true(json_object_get(ann, "readOnlyHint")), read_only[i]);
    ASSERT_INT_EQ(json_is_true(json_object_get(ann, "destructiveHint")),
                  i == 4 || i == 5 || i == 7);
    ASSERT_INT_EQ(json_is_true(json_object_get(ann, "idempotentHint")), i == 0);
  }

  /* store: two landed, one refused with its index; an id was made */
  json_t *st = structured(by_id(all, 3));
  ASSERT_INT_EQ(json_integer_value(json_object_get(st, "inserted")), 2);
  ASSERT_INT_EQ(json_integer_value(json_object_get(st, "failed")), 1);
  json_t *e0 = json_array_get(json_object_get(st, "errors"), 0);
  ASSERT_INT_EQ(json_integer_value(json_object_get(e0, "index")), 2);
  ASSERT_CONTAINS(json_string_value(json_object_get(e0, "error")), "dimension");
  json_t *gen = json_object_get(st, "generated_ids");
  ASSERT_INT_EQ((long long)json_array_size(gen), 1);
  char sql[200];
  snprintf(sql, sizeof sql, "SELECT text FROM embeddings WHERE id = '%s' AND "
           "source_id = 'notes' AND metadata->>'workspace' = 'w'",
           json_string_value(json_array_get(gen, 0)));
  ASSERT_SQL_STR(sql, "the harbour lighthouse");
  /* the text content is the same JSON as the structured one */
  json_t *r3 = json_object_get(by_id(all, 3), "result");
  json_error_t je;
  json_t *again = json_loads(json_string_value(json_object_get(
                                 json_array_get(json_object_get(r3, "content"), 0), "text")),
                             0, &je);
  ASSERT(json_equal(again, st));
  json_decref(again);

  json_t *hits = json_object_get(structured(by_id(all, 4)), "results");
  ASSERT_INT_EQ((long long)json_array_size(hits), 1);
  ASSERT_STR_EQ(json_string_value(json_object_get(json_array_get(hits, 0), "text")),
                "the harbour lighthouse");
  hits = json_object_get(structured(by_id(all, 5)), "results");
  ASSERT_STR_EQ(json_string_value(json_object_get(json_array_get(hits, 0), "id")), "b");

  json_t *doc = structured(by_id(all, 6));
  ASSERT_STR_EQ(json_string_value(json_object_get(doc, "id")), "b");
  ASSERT_INT_EQ((long long)json_array_size(json_object_get(doc, "chunks")), 1);
  /* a failed operation is a tool result with isError, not a protocol error */
  json_t *r7 = json_object_get(by_id(all, 7), "result");
  ASSERT(json_is_true(json_object_get(r7, "isError")));
  ASSERT_CONTAINS(json_string_value(json_object_get(
                      json_array_get(json_object_get(r7, "content"), 0), "text")),
                  "no document with id \"nope\"");

  json_t *page = structured(by_id(all, 8));
  ASSERT_INT_EQ((long long)json_array_size(json_object_get(page, "documents")), 1);
  ASSERT(json_is_string(json_object_get(page, "next_after")));
  ASSERT_INT_EQ(json_integer_value(json_object_get(structured(by_id(all, 9)), "documents")), 2);
  json_t *dry = structured(by_id(all, 10));
  ASSERT_INT_EQ(json_integer_value(json_object_get(dry, "deleted")), 2);
  ASSERT(json_is_true(json_object_get(dry, "dry_run")));
  json_t *del = structured(by_id(all, 11));
  ASSERT_INT_EQ(json_integer_value(json_object_get(del, "deleted")), 1);
  ASSERT_INT_EQ(json_integer_value(json_object_get(del, "chunks_removed")), 1);
  ASSERT_INT_EQ(json_integer_value(json_object_get(del, "not_found")), 1);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings"), 1);
  ASSERT(json_is_true(json_object_get(structured(by_id(all, 12)), "dry_run")));
  json_t *r20 = json_object_get(by_id(all, 20), "result");
  ASSERT(json_is_true(json_object_get(r20, "isError")));
  ASSERT_CONTAINS(json_string_value(json_object_get(
                      json_array_get(json_object_get(r20, "content"), 0), "text")),
                  "min_age must be a duration");
  json_t *res = json_array_get(json_object_get(json_object_get(by_id(all, 13), "result"),
                                               "contents"), 0);
  ASSERT_CONTAINS(json_string_value(json_object_get(res, "text")),
                  "\"source_id\":\"notes\",\"documents\":1"); /* b is deleted */

  ASSERT_INT_EQ(error_code(by_id(all, 14)), -32601);
  ASSERT_CONTAINS(error_message(by_id(all, 14)), "no/such");
  bool parse_error = false; /* the garbage line: id null, -32700 */
  size_t i;
  json_t *a;
  json_array_foreach(all, i, a)
    parse_error |= json_is_null(json_object_get(a, "id")) && error_code(a) == -32700;
  ASSERT(parse_error);
  ASSERT_INT_EQ(error_code(by_id(all, 15)), -32602);
  ASSERT(json_is_object(json_object_get(by_id(all, 16), "result")));
  ASSERT_INT_EQ(error_code(by_id(all, 17)), -32600); /* a method not a string */
  ASSERT_INT_EQ(error_code(by_id(all, 18)), -32602); /* answered, cut whole */
  ASSERT_CONTAINS(error_message(by_id(all, 18)), "unknown tool");
  ASSERT_INT_EQ(error_code(by_id(all, 19)), -32600); /* neither request nor answer */
  json_decref(all);
  th_proc_free(&p);
}

TEST(mcp_refuses_a_message_beyond_its_bound_and_keeps_serving) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  es_close(s);
  /* 10 MB in one message, against the 8 MB bound */
  size_t big = 10u << 20;
  char *input = malloc(big + 1024);
  ASSERT_NOT_NULL(input);
  size_t n = (size_t)sprintf(input, INIT "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":"
                             "\"tools/call\",\"params\":{\"name\":\"search\","
                             "\"arguments\":{\"query\":\"");
  memset(input + n, 'a', big);
  n += big;
  n += (size_t)sprintf(input + n, "\"}}}\n{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\"}\n");
  th_proc p = th_cli_io(input, n, -1, (const char *const[]){"--db", th_conninfo(),
                                                             "mcp", NULL});
  free(input);
  ASSERT_INT_EQ(p.status, 0);
  json_t *all = answers(p.out);
  ASSERT_INT_EQ((long long)json_array_size(all), 3);
  json_t *refused = json_array_get(all, 1);
  ASSERT(json_is_null(json_object_get(refused, "id")));
  ASSERT_INT_EQ(error_code(refused), -32600);
  ASSERT_CONTAINS(error_message(refused), "larger than 8388608 bytes");
  ASSERT(json_is_object(json_object_get(by_id(all, 3), "result")));
  json_decref(all);
  th_proc_free(&p);
}

TEST(mcp_read_only_lists_and_runs_only_the_tools_that_never_write) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  es_close(s);
  th_proc p = run_mcp("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{"
                      "\"protocolVersion\":\"2099-01-01\",\"capabilities\":{},"
                      "\"clientInfo\":{\"name\":\"future\",\"version\":\"1\"}}}\n"
                      "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"}\n"
                      "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{"
                      "\"name\":\"delete_by_source\",\"arguments\":{\"source_id\":\"x\"}}}\n"
                      "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"tools/call\",\"params\":{"
                      "\"name\":\"get_statistics\"}}\n",
                      "--read-only");
  ASSERT_INT_EQ(p.status, 0);
  json_t *all = answers(p.out);
  /* a revision it does not know: the newest it speaks */
  ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(by_id(all, 1), "result"),
                                                  "protocolVersion")), "2025-11-25");
  json_t *tools = json_object_get(json_object_get(by_id(all, 2), "result"), "tools");
  ASSERT_INT_EQ((long long)json_array_size(tools), 4);
  size_t i;
  json_t *t;
  json_array_foreach(tools, i, t)
    ASSERT(json_is_true(json_object_get(json_object_get(t, "annotations"), "readOnlyHint")));
  ASSERT_INT_EQ(error_code(by_id(all, 3)), -32602);
  ASSERT_INT_EQ(json_integer_value(json_object_get(structured(by_id(all, 4)), "documents")), 0);
  json_decref(all);
  th_proc_free(&p);
}

typedef struct writer {
  int nth;
  th_proc p;
} writer;

static void *store_many(void *arg) {
  writer *w = arg;
  size_t cap = 1 << 20, n = 0;
  char *in = malloc(cap);
  n += (size_t)snprintf(in + n, cap - n, INIT);
  for (int b = 0; b < 10; b++) {
    n += (size_t)snprintf(in + n, cap - n, "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":"
                          "\"tools/call\",\"params\":{\"name\":\"store\",\"arguments\":"
                          "{\"source_id\":\"w%d\",\"documents\":[", 100 + b, w->nth);
    for (int d = 0; d < 50; d++)
      n += (size_t)snprintf(in + n, cap - n, "%s{\"id\":\"w%d-%d-%d\",\"text\":\"t\","
                            "\"embedding\":[1,%d,0.5]}", d ? "," : "", w->nth, b, d, d);
    n += (size_t)snprintf(in + n, cap - n, "]}}}\n");
  }
  w->p = th_cli_io(in, n, -1, (const char *const[]){"--db", th_conninfo(), "mcp", NULL});
  free(in);
  return NULL;
}

TEST(mcp_two_servers_storing_into_one_store_at_once_lose_nothing) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  es_close(s);
  writer w[2] = {{.nth = 0}, {.nth = 1}};
  pthread_t t[2];
  for (int i = 0; i < 2; i++)
    ASSERT_INT_EQ(pthread_create(&t[i], NULL, store_many, &w[i]), 0);
  for (int i = 0; i < 2; i++)
    pthread_join(t[i], NULL);
  for (int i = 0; i < 2; i++) {
    ASSERT_INT_EQ(w[i].p.status, 0);
    json_t *all = answers(w[i].p.out);
    ASSERT_INT_EQ((long long)json_array_size(all), 11);
    for (int b = 0; b < 10; b++)
      ASSERT_INT_EQ(json_integer_value(json_object_get(structured(by_id(all, 100 + b)),
                                                       "inserted")), 50);
    json_decref(all);
    th_proc_free(&w[i].p);
  }
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings"), 1000);
  s = th_open();
  es_stats *st = NULL;
  ASSERT_OK(s, es_stats_get(s, NULL, &st));
  ASSERT_INT_EQ(st->documents, 1000);
  ASSERT_INT_EQ((long long)st->sources_total, 2);
  es_stats_free(st);
  es_close(s);
}

/* Runs node with the script of tests/mcp-client and its arguments; its
 * exit status, and its output (stdout and stderr) in *out (malloc'd). */
static int run_node(const char *script, const char *const *args, char **out) {
  char path[1024];
  snprintf(path, sizeof path, "%s/tests/mcp-client/%s", EMBSTORE_SOURCE_DIR, script);
  char sdk[1100];
  snprintf(sdk, sizeof sdk, "%s/tests/mcp-client/node_modules/@modelcontextprotocol/"
           "inspector", EMBSTORE_SOURCE_DIR);
  if (access(sdk, R_OK) != 0)
    FAIL("the MCP TypeScript SDK and Inspector are not installed in "
         "tests/mcp-client: run scripts/setup (npm ci there)");
  const char *argv[16] = {"node", path};
  int n = 2;
  for (int i = 0; args[i] && n < 15; i++)
    argv[n++] = args[i];
  argv[n] = NULL;
  int fds[2];
  ASSERT_INT_EQ(pipe(fds), 0);
  fflush(NULL);
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    close(fds[0]);
    close(fds[1]);
    execvp("node", (char *const *)argv);
    _exit(127);
  }
  close(fds[1]);
  size_t len = 0, cap = 4096;
  char *buf = malloc(cap);
  ssize_t got;
  while ((got = read(fds[0], buf + len, cap - len - 1)) > 0) {
    len += (size_t)got;
    if (cap - len < 1024)
      buf = realloc(buf, cap *= 2);
  }
  buf[len] = '\0';
  close(fds[0]);
  int st;
  waitpid(pid, &st, 0);
  *out = buf;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

TEST(mcp_the_official_typescript_sdk_calls_every_tool_over_stdio) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  es_close(s);
  char *out = NULL;
  int rc = run_node("stdio.mjs", (const char *const[]){th_cli_path(), th_conninfo(), NULL},
                    &out);
  if (rc != 0)
    FAIL("the SDK client failed (exit %d):\n%s", rc, out);
  ASSERT_CONTAINS(out, "ok: protocol 2025-11-25, 8 tools called");
  free(out);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings"), 1); /* it deleted b */
}

/* The MCP Inspector's CLI mode: a second client that nobody here wrote. */
TEST(mcp_the_inspector_cli_lists_the_tools_and_calls_one) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  float v[DIM] = {1, 0, 0};
  es_doc d = {.id = "x", .text = "seen by the inspector", .embedding = v, .dim = DIM};
  ASSERT_OK(s, es_upsert(s, &d, NULL));
  es_close(s);
  const char *cli = "node_modules/.bin/mcp-inspector-cli";
  char *out = NULL;
  int rc = run_node(cli, (const char *const[]){"--cli", th_cli_path(), "--db", th_conninfo(),
                                               "mcp", "--method", "tools/list", NULL},
                    &out);
  if (rc != 0)
    FAIL("the inspector failed (exit %d):\n%s", rc, out);
  static const char *const names[] = {"\"store\"", "\"search\"", "\"get\"", "\"list\"",
                                      "\"delete\"", "\"delete_by_source\"",
                                      "\"get_statistics\"", "\"cleanup_orphaned\""};
  for (size_t i = 0; i < 8; i++)
    ASSERT_CONTAINS(out, names[i]);
  free(out);
  rc = run_node(cli, (const char *const[]){"--cli", th_cli_path(), "--db", th_conninfo(),
                                           "mcp", "--method", "tools/call", "--tool-name",
                                           "get", "--tool-arg", "id=x", NULL},
                &out);
  if (rc != 0)
    FAIL("the inspector's call failed (exit %d):\n%s", rc, out);
  ASSERT_CONTAINS(out, "seen by the inspector");
  ASSERT_CONTAINS(out, "\"isError\": false");
  free(out);
}

/* With an embedding provider, store embeds texts and a query runs hybrid. */
TEST(mcp_with_a_provider_stores_texts_and_searches_hybrid) {
  es_store *s = th_open_init(16, ES_METRIC_COSINE);
  es_close(s);
  th_provider *pv = th_provider_start(16, NULL);
  const char *input =
      INIT "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":"
      "\"store\",\"arguments\":{\"documents\":[{\"id\":\"a\",\"text\":\"the harbour "
      "lighthouse at night\"},{\"id\":\"b\",\"text\":\"mountain river in spring\"}]}}}\n"
      "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{\"name\":"
      "\"search\",\"arguments\":{\"query\":\"lighthouse at night\",\"k\":2}}}\n";
  const char *argv[] = {"--db", th_conninfo(), "--embed-url", th_provider_url(pv),
                        "--embed-model", "test-embed-1", "mcp", NULL};
  th_proc p = th_cli(input, argv);
  ASSERT_INT_EQ(p.status, 0);
  ASSERT_CONTAINS(p.err, "texts are embedded by model test-embed-1");
  json_t *all = answers(p.out);
  ASSERT_INT_EQ(json_integer_value(json_object_get(structured(by_id(all, 2)), "inserted")), 2);
  json_t *hits = json_object_get(structured(by_id(all, 3)), "results");
  json_t *top = json_array_get(hits, 0);
  ASSERT_STR_EQ(json_string_value(json_object_get(top, "id")), "a");
  ASSERT_INT_EQ(json_integer_value(json_object_get(top, "vector_rank")), 1);
  ASSERT_INT_EQ(json_integer_value(json_object_get(top, "text_rank")), 1);
  ASSERT_SQL_STR("SELECT model FROM embeddings WHERE id = 'b'", "test-embed-1");
  json_decref(all);
  th_proc_free(&p);
  th_provider_stop(pv);
}

#define MCP_ADMIN "mcp-admin-token-0123456789"
#define MCP_READ "mcp-read-token-01234567890"
#define MCP_TENANT "mcp-tenant-token-012345678"

/* One POST to /mcp with token and extra headers; its status. */
static long mcp_post(const th_server *s, const char *token, const char *extra,
                     const char *body, char **answer) {
  char auth[128];
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
  const char *h[] = {auth, "Content-Type: application/json",
                     "Accept: application/json, text/event-stream", extra, NULL};
  th_http r = th_request(s, "POST", "/mcp", h, body, strlen(body));
  long st = r.status;
  if (answer)
    *answer = strdup(r.body ? r.body : "");
  th_http_free(&r);
  return st;
}

TEST(mcp_over_streamable_http_serves_the_sdk_behind_tokens) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  es_close(s);
  char *path;
  ASSERT(asprintf(&path, "%s/tokens", th_tmpdir()) > 0);
  FILE *f = fopen(path, "w");
  ASSERT_NOT_NULL(f);
  fputs(MCP_ADMIN " admin *\n" MCP_READ " read *\n" MCP_TENANT " write w1\n", f);
  ASSERT_INT_EQ(fclose(f), 0);
  ASSERT_INT_EQ(chmod(path, 0600), 0);
  th_server srv = th_serve_start(NULL, (const char *const[]){"--tokens", path, NULL});
  free(path);

  char *out = NULL;
  int rc = run_node("http.mjs", (const char *const[]){srv.base, MCP_ADMIN, MCP_READ,
                                                  MCP_TENANT, NULL}, &out);
  if (rc != 0)
    FAIL("the SDK client over HTTP failed (exit %d):\n%s", rc, out);
  ASSERT_CONTAINS(out, "ok: 8 tools for admin, 4 for read, a tenant isolated");
  free(out);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings WHERE source_id = 'web'"), 2);

  static const char init[] =
      "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{"
      "\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},\"clientInfo\":{"
      "\"name\":\"curl\",\"version\":\"1\"}}}";
  /* No token: 401, as everywhere. */
  th_http r = th_request(&srv, "POST", "/mcp", (const char *const[]){
      "Content-Type: application/json", NULL}, init, strlen(init));
  ASSERT_INT_EQ(r.status, 401);
  th_http_free(&r);
  /* A foreign Origin (DNS rebinding): 403; a loopback one is fine. */
  ASSERT_INT_EQ(mcp_post(&srv, MCP_ADMIN, "Origin: http://evil.example", init, NULL), 403);
  ASSERT_INT_EQ(mcp_post(&srv, MCP_ADMIN, "Origin: http://localhost:3000", init, NULL), 200);
  /* A tenant's token: its session acts within workspace w1 only. */
  char auth_t[128];
  snprintf(auth_t, sizeof auth_t, "Authorization: Bearer %s", MCP_TENANT);
  th_http ti = th_request(&srv, "POST", "/mcp", (const char *const[]){auth_t,
      "Content-Type: application/json", NULL}, init, strlen(init));
  ASSERT_INT_EQ(ti.status, 200);
  char *tsid = th_http_header(&ti, "Mcp-Session-Id");
  ASSERT_NOT_NULL(tsid);
  th_http_free(&ti);
  char thdr[128];
  snprintf(thdr, sizeof thdr, "Mcp-Session-Id: %s", tsid);
  free(tsid);
  static const struct {
    const char *args, *want;
  } tcalls[] = {
      /* stored into its only workspace */
      {"\"store\",\"arguments\":{\"documents\":[{\"id\":\"t1\",\"text\":\"tenant "
       "note\",\"embedding\":[1,0,0]}]}", "\"inserted\":1"},
      /* not into another */
      {"\"store\",\"arguments\":{\"documents\":[{\"id\":\"t2\",\"text\":\"x\","
       "\"metadata\":{\"workspace\":\"w2\"},\"embedding\":[1,0,0]}]}",
       "may not write workspace \\\"w2\\\""},
      /* never over a document of another workspace (h1 is the admin's) */
      {"\"store\",\"arguments\":{\"documents\":[{\"id\":\"h1\",\"text\":\"taken\","
       "\"embedding\":[1,0,0]}]}", "stored in a workspace this token may not write"},
      {"\"search\",\"arguments\":{\"vector\":[1,0,0],\"k\":10}", "\"id\":\"t1\""},
      {"\"get\",\"arguments\":{\"id\":\"h1\"}", "no document with id"},
      {"\"list\",\"arguments\":{}", "\"t1\""},
      {"\"delete\",\"arguments\":{\"ids\":[\"h1\"],\"dry_run\":true}",
       "\"not_found\":1"},
      {"\"get_statistics\",\"arguments\":{}", "\"documents\":2"}, /* t1, sdk-t1 */
      {"\"get_statistics\",\"arguments\":{\"workspace\":\"w2\"}",
       "may not use workspace"},
  };
  for (size_t i = 0; i < sizeof tcalls / sizeof tcalls[0]; i++) {
    char msg[512], *ans = NULL;
    snprintf(msg, sizeof msg, "{\"jsonrpc\":\"2.0\",\"id\":%zu,\"method\":\"tools/call\","
             "\"params\":{\"name\":%s}}", i + 10, tcalls[i].args);
    th_set_fail_context("tenant call %zu", i);
    ASSERT_INT_EQ(mcp_post(&srv, MCP_TENANT, thdr, msg, &ans), 200);
    ASSERT_CONTAINS(ans, tcalls[i].want);
    if (i == 3 || i == 5) /* nothing of the admin's shows */
      ASSERT_NOT_CONTAINS(ans, "h1");
    free(ans);
  }
  th_set_fail_context(NULL);
  ASSERT_SQL_STR("SELECT metadata->>'workspace' FROM embeddings WHERE id = 't1'", "w1");
  ASSERT_SQL_STR("SELECT text FROM embeddings WHERE id = 'h1'", "served over http");
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings WHERE id = 't2'"), 0);
  /* the whole store's statistics are not a tenant's to read */
  char *ans = NULL;
  ASSERT_INT_EQ(mcp_post(&srv, MCP_TENANT, thdr, "{\"jsonrpc\":\"2.0\",\"id\":40,"
                         "\"method\":\"resources/read\",\"params\":{\"uri\":"
                         "\"embstore://sources\"}}", &ans), 200);
  ASSERT_NOT_CONTAINS(ans, "web");
  free(ans);
  /* nor the store-wide counts per model */
  ASSERT_INT_EQ(mcp_post(&srv, MCP_TENANT, thdr, "{\"jsonrpc\":\"2.0\",\"id\":41,"
                         "\"method\":\"tools/call\",\"params\":{\"name\":"
                         "\"get_statistics\"}}", &ans), 200);
  ASSERT_CONTAINS(ans, "\"models\":[]");
  free(ans);
  /* A message without a session, an unknown session, a bad version. */
  static const char ping[] = "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}";
  ASSERT_INT_EQ(mcp_post(&srv, MCP_ADMIN, NULL, ping, NULL), 400);
  ASSERT_INT_EQ(mcp_post(&srv, MCP_ADMIN, "Mcp-Session-Id: 0123456789abcdef0123456789abcdef",
                         ping, NULL), 404);
  ASSERT_INT_EQ(mcp_post(&srv, MCP_ADMIN, "MCP-Protocol-Version: 1999-01-01", init, NULL), 400);
  /* A session belongs to the token that opened it. */
  char auth[128];
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", MCP_ADMIN);
  r = th_request(&srv, "POST", "/mcp", (const char *const[]){auth,
      "Content-Type: application/json", NULL}, init, strlen(init));
  ASSERT_INT_EQ(r.status, 200);
  char *sid = th_http_header(&r, "Mcp-Session-Id");
  ASSERT_NOT_NULL(sid);
  th_http_free(&r);
  char hdr[128];
  snprintf(hdr, sizeof hdr, "Mcp-Session-Id: %s", sid);
  ASSERT_INT_EQ(mcp_post(&srv, MCP_READ, hdr, ping, NULL), 404);
  ASSERT_INT_EQ(mcp_post(&srv, MCP_ADMIN, hdr, ping, NULL), 200);
  static const char note[] = "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}";
  ASSERT_INT_EQ(mcp_post(&srv, MCP_ADMIN, hdr, note, NULL), 202);
  /* GET (a server stream) is not offered. */
  r = th_request(&srv, "GET", "/mcp", (const char *const[]){auth, hdr, NULL}, NULL, 0);
  ASSERT_INT_EQ(r.status, 405);
  th_http_free(&r);
  /* The admin token lowered to read (SIGHUP): its open session lists the
   * read-only tools from the next request on. */
  static const char list[] = "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/list\"}";
  char *tools = NULL;
  ASSERT_INT_EQ(mcp_post(&srv, MCP_ADMIN, hdr, list, &tools), 200);
  ASSERT_CONTAINS(tools, "\"cleanup_orphaned\"");
  free(tools);
  ASSERT(asprintf(&path, "%s/tokens", th_tmpdir()) > 0);
  f = fopen(path, "w");
  ASSERT_NOT_NULL(f);
  fputs(MCP_ADMIN " read *\n", f);
  ASSERT_INT_EQ(fclose(f), 0);
  free(path);
  ASSERT_INT_EQ(kill(srv.pid, SIGHUP), 0);
  bool lowered = false;
  for (double t0 = th_now(); !lowered && th_now() - t0 < 10;) { /* polls the reload */
    ASSERT_INT_EQ(mcp_post(&srv, MCP_ADMIN, hdr, list, &tools), 200);
    lowered = strstr(tools, "\"store\"") == NULL;
    free(tools);
  }
  ASSERT(lowered);
  free(sid);
  ASSERT_INT_EQ(th_serve_stop(&srv), 0);
}
