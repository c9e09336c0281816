/* test_coherence.c - search caches that are never stale across processes:
 * two `embstore serve` on one store, writes through the other server and
 * through plain SQL, each seen by the very next search of a server whose
 * cache held the old answer; the listening connection killed while
 * writes happen; the counters that /metrics and /v1/stats report. */
#define _GNU_SOURCE
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "test.h"

#define DIM 4

static json_t *body_json(const th_http *r) {
  json_error_t e;
  json_t *j = json_loads(r->body, 0, &e);
  if (j == NULL)
    FAIL("not JSON (%s): %.300s", e.text, r->body);
  return j;
}

/* The id of the nearest document to [1,0,0,0] through server s. */
static char *top_id(const th_server *s) {
  th_http r = th_post_json(s, "/v1/search", "{\"vector\":[1,0,0,0],\"k\":1}", NULL);
  ASSERT_HTTP(r, 200);
  json_t *j = body_json(&r);
  json_t *hit = json_array_get(json_object_get(j, "results"), 0);
  char *id = strdup(hit ? json_string_value(json_object_get(hit, "id")) : "");
  json_decref(j);
  th_http_free(&r);
  return id;
}

/* A document nearer to [1,0,0,0] than every earlier one of the test. */
static void nearer(int i, char *vec, size_t cap) {
  snprintf(vec, cap, "[1,%g,0,0]", 1.0 / (i + 2));
}

TEST(caches_of_two_servers_see_each_others_and_plain_sql_writes_at_once) {
  es_store *st = th_open_init(DIM, ES_METRIC_COSINE);
  es_close(st);
  th_exec("INSERT INTO embeddings (id, embedding, source_id) VALUES "
          "('far', '[0,1,0,0]', 's')");
  th_server a = th_serve_start(NULL, NULL);
  th_server b = th_serve_start(NULL, NULL);
  for (int i = 0; i < 12; i++) {
    /* B answers twice: the second from its cache. */
    free(top_id(&b));
    char *before = top_id(&b);
    char id[32], vec[64], body[256], sql[256];
    snprintf(id, sizeof id, "near-%d", i);
    nearer(i, vec, sizeof vec);
    if (i % 3 == 0) { /* through the other server */
      snprintf(body, sizeof body, "{\"documents\":[{\"id\":\"%s\",\"embedding\":%s,"
               "\"source_id\":\"s\"}]}", id, vec);
      th_http r = th_post_json(&a, "/v1/documents", body, NULL);
      ASSERT_HTTP(r, 200);
      th_http_free(&r);
    } else if (i % 3 == 1) { /* plain SQL, a new row */
      snprintf(sql, sizeof sql, "INSERT INTO embeddings (id, embedding, source_id) "
               "VALUES ('%s', '%s', 's')", id, vec);
      th_exec(sql);
    } else { /* plain SQL, an old row moved: chunks are not involved */
      snprintf(id, sizeof id, "far");
      snprintf(sql, sizeof sql, "UPDATE embeddings SET embedding = '%s' "
               "WHERE id = 'far'", vec);
      th_exec(sql);
    }
    /* At once, no waiting: B's next search sees the write. */
    char *after = top_id(&b);
    if (strcmp(after, id) != 0)
      FAIL("write %d (%s): B still answers %s (before the write: %s)", i, id,
           after, before);
    free(before);
    free(after);
  }
  /* The cache did answer (twelve repeated searches), and it heard every
   * write that was not its own: twelve of them or more (a statement
   * notifies once per commit; the server's ingest commits once). */
  ASSERT(th_metric(&b, "embstore_cache_hits_total") >= 12);
  ASSERT(th_metric(&b, "embstore_cache_invalidations_total") >= 12);
  ASSERT_INT_EQ(th_metric(&b, "embstore_cache_listening"), 1);
  ASSERT_INT_EQ(th_metric(&b, "embstore_cache_listener_reconnects_total"), 0);
  th_http r = th_get(&b, "/v1/stats", NULL);
  ASSERT_HTTP(r, 200);
  json_t *j = body_json(&r);
  json_t *c = json_object_get(j, "server_cache");
  ASSERT(json_is_true(json_object_get(c, "listening")));
  ASSERT(json_integer_value(json_object_get(c, "invalidations")) >= 12);
  json_decref(j);
  th_http_free(&r);
  ASSERT_INT_EQ(th_serve_stop(&a), 0);
  ASSERT_INT_EQ(th_serve_stop(&b), 0);
}

/* The cached answer of a search limited to source src, through the
 * library. */
static char *lib_top(es_store *s, const char *src) {
  float q[DIM] = {1, 0, 0, 0};
  es_search_params p;
  es_search_params_init(&p);
  p.vector = q;
  p.dim = DIM;
  p.k = 1;
  p.source_id = src;
  es_results *r = NULL;
  ASSERT_OK(s, es_search(s, &p, &r));
  char *id = strdup(r->n ? r->hits[0].id : "");
  es_results_free(r);
  return id;
}

TEST(a_cache_that_starts_listening_forgets_what_it_stored_before) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  th_exec("INSERT INTO embeddings (id, embedding, source_id) VALUES "
          "('far', '[0,1,0,0]', 's1')");
  /* Stored while nobody listened (a handle's first search), then changed
   * by another writer whom no listener heard. */
  char *before = lib_top(s, "s1");
  ASSERT_STR_EQ(before, "far");
  es_runtime rt;
  es_runtime_get(s, &rt);
  ASSERT_INT_EQ(rt.cache_listening, 0);
  ASSERT_INT_EQ(rt.cache_entries, 1);
  th_exec("INSERT INTO embeddings (id, embedding, source_id) VALUES "
          "('near', '[1,0,0,0]', 's1')");
  char *after = lib_top(s, "s1");
  ASSERT_STR_EQ(after, "near");
  es_runtime_get(s, &rt);
  ASSERT_INT_EQ(rt.cache_listening, 1);
  ASSERT_INT_EQ(rt.cache_hits, 0);
  free(before);
  free(after);
  es_close(s);
}

TEST(a_lost_listening_connection_invalidates_everything_and_reconnects) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  th_exec("INSERT INTO embeddings (id, embedding, source_id) VALUES "
          "('a', '[0,1,0,0]', 's1'), ('b', '[0,1,0,0]', 's2')");
  th_cache_listen(s);
  free(lib_top(s, "s1"));
  free(lib_top(s, "s1"));
  es_runtime rt;
  es_runtime_get(s, &rt);
  ASSERT_INT_EQ(rt.cache_hits, 1);
  ASSERT_INT_EQ(rt.cache_listening, 1);

  /* The listener's backend: the one session whose last query was LISTEN
   * or the empty query of a search's sync. */
#define LISTENER "FROM pg_stat_activity WHERE datname = current_database() AND " \
                 "query IN ('LISTEN embstore_changes', '') AND pid <> pg_backend_pid()"
  ASSERT_INT_EQ(th_int("SELECT count(*) " LISTENER), 1);
  long long pid = th_int("SELECT pid " LISTENER);
  char sql[256];
  /* Returns once the backend is gone (PostgreSQL 14+: the timeout). */
  snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%lld, 10000)", pid);
  th_exec(sql);
  /* Written while nobody listens: no notification will ever say so. */
  th_exec("INSERT INTO embeddings (id, embedding, source_id) VALUES "
          "('a2', '[1,0.01,0,0]', 's1')");
  char *id = lib_top(s, "s1");
  ASSERT_STR_EQ(id, "a2"); /* not the cached answer, 'a' */
  free(id);
  /* Listening again after at most one more search, and caching again. */
  free(lib_top(s, "s1"));
  es_runtime_get(s, &rt);
  ASSERT_INT_EQ(rt.cache_listening, 1);
  ASSERT_INT_EQ(rt.cache_listener_reconnects, 1);
  int64_t hits = rt.cache_hits;
  free(lib_top(s, "s1"));
  es_runtime_get(s, &rt);
  ASSERT_INT_EQ(rt.cache_hits, hits + 1);
  /* And it hears writes again: the new connection listens. */
  th_exec("UPDATE embeddings SET embedding = '[0,0,0,1]' WHERE id = 'a2'");
  id = lib_top(s, "s1");
  ASSERT_STR_EQ(id, "a");
  free(id);
  es_close(s);
}

TEST(notifications_name_the_sources_a_statement_touched) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  th_exec("INSERT INTO embeddings (id, embedding, source_id) VALUES "
          "('a', '[1,0,0,0]', 's1'), ('b', '[1,0,0,0]', 's2')");
  th_cache_listen(s);
  /* Cached: one search per source. */
  free(lib_top(s, "s1"));
  free(lib_top(s, "s2"));
  es_runtime rt;
  es_runtime_get(s, &rt);
  int64_t hits = rt.cache_hits;
  /* A plain write to s2 alone: s1's answer stays cached, s2's does not. */
  th_exec("UPDATE embeddings SET metadata = '{\"x\":1}' WHERE id = 'b'");
  free(lib_top(s, "s1"));
  free(lib_top(s, "s2"));
  es_runtime_get(s, &rt);
  ASSERT_INT_EQ(rt.cache_hits, hits + 1);
  ASSERT_INT_EQ(rt.cache_invalidations, 1);
  /* The payload itself, as another listener hears it. */
  PGconn *pg = th_connect(th_conninfo());
  th_pg_exec(pg, "LISTEN embstore_changes");
  th_exec("INSERT INTO chunks (id, document_id, chunk_index, text) "
          "VALUES ('b#0', 'b', 0, 'x')");
  th_exec("TRUNCATE chunks");
  th_pg_exec(pg, "SELECT 1"); /* the notifications come before its answer */
  PGnotify *n = PQnotifies(pg);
  ASSERT(n != NULL);
  ASSERT_STR_EQ(n->extra, "[\"s2\"]");
  PQfreemem(n);
  n = PQnotifies(pg);
  ASSERT(n != NULL);
  ASSERT_STR_EQ(n->extra, "*");
  PQfreemem(n);
  ASSERT(PQnotifies(pg) == NULL);
  /* Too many sources for one payload: everything. */
  th_exec("INSERT INTO embeddings (id, embedding, source_id) SELECT 'm' || i, "
          "'[1,0,0,0]', repeat('s', 40) || i FROM generate_series(1, 400) i");
  th_pg_exec(pg, "SELECT 1");
  n = PQnotifies(pg);
  ASSERT(n != NULL);
  ASSERT_STR_EQ(n->extra, "*");
  PQfreemem(n);
  PQfinish(pg);
  es_close(s);
}

TEST(a_search_right_after_another_sessions_commit_never_gets_the_old_answer) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  PGconn *pg = th_connect(th_conninfo());
  th_pg_exec(pg, "INSERT INTO embeddings (id, embedding, source_id) VALUES "
                 "('x', '[0,1,0,0]', 's'), ('y', '[0,0,1,0]', 's')");
  /* Each round: the answer cached, then another session moves the other
   * document nearest, and the search that follows its COMMIT at once (no
   * time for the listener's thread to read the notification first) must
   * see it. */
  int stale = 0;
  for (int i = 0; i < 200; i++) {
    const char *near = i % 2 ? "x" : "y", *far = i % 2 ? "y" : "x";
    free(lib_top(s, NULL));
    char *cached = lib_top(s, NULL);
    char sql[200];
    snprintf(sql, sizeof sql, "UPDATE embeddings SET embedding = CASE id WHEN '%s' "
             "THEN '[1,0,0,0]'::vector ELSE '[0,1,0,0]'::vector END", near);
    th_pg_exec(pg, sql);
    char *id = lib_top(s, NULL);
    stale += strcmp(id, near) != 0;
    (void)far;
    free(cached);
    free(id);
  }
  ASSERT_INT_EQ(stale, 0);
  es_runtime rt;
  es_runtime_get(s, &rt);
  ASSERT(rt.cache_hits >= 200); /* the cache answered the repeated searches */
  PQfinish(pg);
  es_close(s);
}
