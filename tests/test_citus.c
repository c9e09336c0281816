/* test_citus.c - embstore on a real Citus cluster: a coordinator and two
 * workers that the test starts in its temporary directory, each an
 * embedded cluster of its own with citus preloaded, joined over their
 * Unix sockets (nothing listens on TCP).  Skipped, saying why, where the
 * citus extension is not installed (Debian 12 does not package it). */
#define _GNU_SOURCE
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http.h"
#include "test.h"

#define DIM 8
#define NODES 3 /* the coordinator, then the workers */

typedef struct citus {
  es_cluster *node[NODES];
  char sock[NODES][PATH_MAX]; /* each node's socket directory */
  char conninfo[PATH_MAX + 160]; /* the coordinator's store database */
} citus;

/* Skips the test unless the servers here can load citus. */
static void need_citus(void) {
  PGconn *pg = th_connect(th_admin_conninfo());
  long long n = th_pg_int(pg, "SELECT count(*) FROM pg_available_extensions "
                              "WHERE name = 'citus'");
  PQfinish(pg);
  if (n == 0)
    th_skip("the citus extension is not installed for this PostgreSQL "
            "(Debian 12 does not package it; build Citus 13.2 from its "
            "source to run the Citus tests)");
}

/* Starts the nodes and joins the workers to the coordinator. */
static void citus_start(citus *c) {
  memset(c, 0, sizeof *c);
  need_citus();
  setenv("EMBSTORE_PG_OPTIONS", "-c shared_preload_libraries=citus", 1);
  for (int i = 0; i < NODES; i++) {
    char home[PATH_MAX];
    snprintf(home, sizeof home, "%s/citus%d", th_tmpdir(), i);
    if (es_cluster_open(home, &c->node[i]) != ES_OK ||
        es_cluster_start(c->node[i]) != ES_OK)
      FAIL("citus node %d: %s", i, es_cluster_errmsg(c->node[i]));
    const char *ci = es_cluster_conninfo(c->node[i]);
    char *host = th_conninfo_value(ci, "host");
    snprintf(c->sock[i], sizeof c->sock[i], "%s", host);
    free(host);
    PGconn *pg = th_connect(ci);
    th_pg_exec(pg, "CREATE EXTENSION IF NOT EXISTS citus");
    th_pg_exec(pg, "CREATE EXTENSION IF NOT EXISTS vector");
    PQfinish(pg);
  }
  snprintf(c->conninfo, sizeof c->conninfo, "%s",
           es_cluster_conninfo(c->node[0]));
  PGconn *co = th_connect(c->conninfo);
  char sql[PATH_MAX + 96];
  snprintf(sql, sizeof sql, "SELECT citus_set_coordinator_host('%s', 5432)",
           c->sock[0]);
  th_pg_exec(co, sql);
  for (int i = 1; i < NODES; i++) {
    snprintf(sql, sizeof sql, "SELECT citus_add_node('%s', 5432)", c->sock[i]);
    th_pg_exec(co, sql);
  }
  ASSERT_INT_EQ(th_pg_int(co, "SELECT count(*) FROM pg_dist_node WHERE "
                              "noderole = 'primary' AND isactive"),
                NODES);
  PQfinish(co);
}

/* Stops the nodes and frees them. */
static void citus_stop(citus *c) {
  for (int i = NODES - 1; i >= 0; i--) {
    if (es_cluster_stop(c->node[i]) != ES_OK)
      FAIL("stopping citus node %d: %s", i, es_cluster_errmsg(c->node[i]));
    es_cluster_close(c->node[i]);
  }
}

/* ---- one scenario, told as a transcript ------------------------------ */

typedef struct tr {
  char *buf;
  size_t len, cap;
} tr;

static void say(tr *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(tr *t, const char *fmt, ...) {
  char line[2048];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n < 0)
    FAIL("vsnprintf");
  if (t->len + (size_t)n + 2 > t->cap) {
    t->cap = (t->len + (size_t)n + 2) * 2;
    t->buf = realloc(t->buf, t->cap);
    if (t->buf == NULL)
      FAIL("out of memory");
  }
  memcpy(t->buf + t->len, line, (size_t)n);
  t->len += (size_t)n;
  t->buf[t->len++] = '\n';
  t->buf[t->len] = '\0';
}

#define NDOCS 240

/* The corpus of round r: documents in 6 sources and 3 workspaces, two
 * chunks each; round 1 changes every tenth document's text and vector and
 * moves every 15th to another source. */
typedef struct corpus {
  es_doc d[NDOCS];
  es_chunk ch[NDOCS][2];
  char id[NDOCS][16], cid[NDOCS][2][20], src[NDOCS][8], meta[NDOCS][64],
      text[NDOCS][48];
  float v[NDOCS][DIM], cv[NDOCS][2][DIM];
} corpus;

static float noise(unsigned *x) {
  *x = *x * 1103515245u + 12345u;
  return (float)((*x >> 8) & 0xffff) / 65536.0f - 0.5f;
}

static void make_corpus(corpus *c, int round) {
  unsigned seed = 7;
  for (int i = 0; i < NDOCS; i++) {
    bool changed = round > 0 && i % 10 == 3;
    snprintf(c->id[i], sizeof c->id[i], "doc%03d", i);
    snprintf(c->src[i], sizeof c->src[i], "s%d",
             (i + (round > 0 && i % 15 == 0 ? 1 : 0)) % 6);
    snprintf(c->meta[i], sizeof c->meta[i],
             "{\"workspace\": \"w%d\", \"n\": %d, \"kind\": \"%s\"}", i % 3,
             i, i % 4 ? "note" : "memo");
    snprintf(c->text[i], sizeof c->text[i], "%s about %s number %d",
             i % 2 ? "apples" : "pears", i % 5 ? "orchards" : "markets", i);
    for (int k = 0; k < DIM; k++)
      c->v[i][k] = noise(&seed) + (changed ? 0.3f : 0);
    for (int j = 0; j < 2; j++) {
      snprintf(c->cid[i][j], sizeof c->cid[i][j], "doc%03d#%d", i, j);
      for (int k = 0; k < DIM; k++)
        c->cv[i][j][k] = noise(&seed);
      c->ch[i][j] = (es_chunk){.id = c->cid[i][j], .text = changed ? "changed" : "chunk",
                               .embedding = c->cv[i][j], .dim = DIM};
    }
    c->d[i] = (es_doc){.id = c->id[i], .text = c->text[i], .embedding = c->v[i],
                       .dim = DIM, .metadata_json = c->meta[i],
                       .source_id = c->src[i], .has_chunks = 1,
                       .chunks = c->ch[i], .n_chunks = 2};
  }
}

static void say_batch(tr *t, const char *what, es_status rc, const es_batch_result *r) {
  say(t, "%s: %s inserted %zu updated %zu unchanged %zu failed %zu duplicates %zu "
      "chunks %zu", what, es_status_name(rc), r->inserted, r->updated,
      r->unchanged, r->failed, r->duplicates, r->chunks_written);
}

static void say_search(tr *t, es_store *s, const char *what, es_search_params *p) {
  es_results *r = NULL;
  es_status rc = es_search(s, p, &r);
  char line[1800] = "";
  for (size_t i = 0; r && i < r->n; i++)
    snprintf(line + strlen(line), sizeof line - strlen(line), " %s", r->hits[i].id);
  say(t, "search %s: %s%s", what, es_status_name(rc), line);
  es_results_free(r);
}

static void say_stats(tr *t, es_store *s, const char *workspace) {
  es_stats *st = NULL;
  ASSERT_OK(s, es_stats_get(s, workspace, &st));
  say(t, "stats %s: documents %lld chunks %lld without_vector %lld orphaned %lld "
      "sources %zu", workspace ? workspace : "-", (long long)st->documents,
      (long long)st->chunks, (long long)st->without_vector,
      (long long)st->orphaned_chunks, st->sources_total);
  for (size_t i = 0; i < st->sources_total; i++)
    say(t, "  source %s: %lld %lld", st->sources[i].source_id ? st->sources[i].source_id : "-",
        (long long)st->sources[i].documents, (long long)st->sources[i].chunks);
  es_stats_free(st);
  es_count_check *cc = NULL;
  ASSERT_OK(s, es_check_counts(s, 0, &cc));
  say(t, "counts check: drift %zu orphaned %lld/%lld", cc->n_drift,
      (long long)cc->orphaned_chunks, (long long)cc->orphaned_counted);
  es_count_check_free(cc);
}

static void say_delete(tr *t, const char *what, es_status rc, es_delete_result *r) {
  say(t, "delete %s: %s deleted %lld chunks %lld not_found %lld", what,
      es_status_name(rc), r ? (long long)r->deleted : -1,
      r ? (long long)r->chunks_removed : -1, r ? (long long)r->not_found : -1);
  es_delete_result_free(r);
}

/* FNV-1a of s: what a transcript line tells of a long output. */
static unsigned long long fnv(const char *s, size_t n) {
  unsigned long long h = 14695981039346656037ull;
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
  return h;
}

/* Drops, at any depth, what depends on the server and the moment rather
 * than on the store's contents: timings, sizes, the index's build facts
 * and health prose. */
static void strip_volatile(json_t *j) {
  static const char *const drop[] = {
      "seconds", "took_ms", "storage_mb", "reclaimable_mb", "avg_search_ms",
      "avg_insert_ms", "cache_hit_rate", "index", "index_health", "health",
      "health_reasons", "replica", "served_by", "created_at", "updated_at",
      "server_cache" /* off on a distributed store */, NULL};
  if (json_is_object(j)) {
    for (size_t i = 0; drop[i]; i++)
      json_object_del(j, drop[i]);
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v) strip_volatile(v);
  } else if (json_is_array(j)) {
    size_t i;
    json_t *v;
    json_array_foreach(j, i, v) strip_volatile(v);
  }
}

/* A JSON answer as one transcript line: keys sorted, volatile fields
 * dropped. */
static void say_json(tr *t, const char *what, long status, const char *body, size_t len) {
  json_error_t e;
  json_t *j = json_loadb(body ? body : "", len, 0, &e);
  if (j == NULL) {
    say(t, "%s: HTTP %ld, not JSON: %.200s", what, status, body ? body : "");
    return;
  }
  strip_volatile(j);
  char *out = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
  say(t, "%s: %ld %.1900s", what, status, out);
  free(out);
  json_decref(j);
}

/* The HTTP server over the store at conninfo: what each answer says. */
static void serve_part(tr *t, const char *conninfo) {
  th_server sv = th_serve_start(conninfo, NULL);
  static const char docs[] =
      "{\"documents\":[{\"id\":\"h1\",\"text\":\"served one\",\"embedding\":"
      "[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8],\"source_id\":\"web\",\"metadata\":"
      "{\"workspace\":\"w1\"},\"chunks\":[{\"id\":\"h1#0\",\"text\":\"c\","
      "\"embedding\":[0.8,0.7,0.6,0.5,0.4,0.3,0.2,0.1]}]},{\"id\":\"h2\",\"text\":"
      "\"served two\",\"embedding\":[0.2,0.1,0.3,0.4,0.5,0.6,0.7,0.9],\"source_id\":"
      "\"web\"},{\"id\":\"h3\",\"embedding\":[1,2]}]}";
  th_http r = th_post_json(&sv, "/v1/documents", docs, NULL);
  say_json(t, "http ingest", r.status, r.body, r.len);
  th_http_free(&r);
  r = th_post_json(&sv, "/v1/documents", docs, NULL);
  say_json(t, "http ingest again", r.status, r.body, r.len);
  th_http_free(&r);
  r = th_post_json(&sv, "/v1/search", "{\"vector\":[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8],"
                   "\"k\":5,\"filter\":{\"workspace\":\"w1\"}}", NULL);
  say_json(t, "http search", r.status, r.body, r.len);
  th_http_free(&r);
  r = th_get(&sv, "/v1/documents/h1?include=embedding", NULL);
  say_json(t, "http get", r.status, r.body, r.len);
  th_http_free(&r);
  r = th_get(&sv, "/v1/documents?limit=3&source=web", NULL);
  say_json(t, "http list", r.status, r.body, r.len);
  th_http_free(&r);
  r = th_get(&sv, "/v1/stats", NULL);
  say_json(t, "http stats", r.status, r.body, r.len);
  th_http_free(&r);
  r = th_get(&sv, "/v1/export", NULL);
  say(t, "http export: %ld %zu bytes fnv %llx", r.status, r.len, fnv(r.body, r.len));
  th_http_free(&r);
  r = th_request(&sv, "DELETE", "/v1/sources/web", NULL, NULL, 0);
  say_json(t, "http delete source", r.status, r.body, r.len);
  th_http_free(&r);
  ASSERT_INT_EQ(th_serve_stop(&sv), 0);
}

/* `embstore mcp` over its stdio on the store at conninfo. */
static void mcp_part(tr *t, const char *conninfo) {
  static const char input[] =
      "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{"
      "\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},\"clientInfo\":{"
      "\"name\":\"test\",\"version\":\"1\"}}}\n"
      "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n"
      "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":"
      "\"store\",\"arguments\":{\"source_id\":\"agent\",\"workspace\":\"w2\","
      "\"documents\":[{\"id\":\"m1\",\"text\":\"remembered\",\"embedding\":"
      "[0.3,0.1,0.2,0.4,0.5,0.6,0.7,0.8]},{\"id\":\"m2\",\"text\":\"also\","
      "\"embedding\":[0.3,0.1,0.2,0.4,0.5,0.6,0.7,0.1]}]}}}\n"
      "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{\"name\":"
      "\"search\",\"arguments\":{\"vector\":[0.3,0.1,0.2,0.4,0.5,0.6,0.7,0.8],\"k\":4,"
      "\"filter\":{\"workspace\":\"w2\"}}}}\n"
      "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"tools/call\",\"params\":{\"name\":"
      "\"get\",\"arguments\":{\"id\":\"m1\"}}}\n"
      "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/call\",\"params\":{\"name\":"
      "\"list\",\"arguments\":{\"limit\":3}}}\n"
      "{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"tools/call\",\"params\":{\"name\":"
      "\"get_statistics\",\"arguments\":{}}}\n"
      "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{\"name\":"
      "\"delete\",\"arguments\":{\"ids\":[\"m2\",\"zz\"]}}}\n"
      "{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"tools/call\",\"params\":{\"name\":"
      "\"delete_by_source\",\"arguments\":{\"source_id\":\"agent\"}}}\n";
  const char *argv[] = {"--db", conninfo, "mcp", NULL};
  th_proc p = th_cli(input, argv);
  say(t, "mcp exit %d", p.status);
  for (const char *l = p.out; l && *l;) {
    const char *nl = strchr(l, '\n');
    size_t len = nl ? (size_t)(nl - l) : strlen(l);
    json_error_t e;
    json_t *j = json_loadb(l, len, 0, &e);
    json_t *res = j ? json_object_get(j, "result") : NULL;
    json_t *sc = res ? json_object_get(res, "structuredContent") : NULL;
    if (sc) {
      json_object_del(res, "content"); /* the same as text */
      char *body = json_dumps(res, 0);
      say_json(t, "mcp", 0, body, strlen(body));
      free(body);
    }
    json_decref(j);
    l = nl ? nl + 1 : NULL;
  }
  th_proc_free(&p);
}

/* Runs every command over s and tells what each answered. */
static char *scenario(es_store *s, const char *conninfo) {
  tr t = {0};
  corpus *c = calloc(1, sizeof *c);
  es_batch_options bo;
  es_batch_options_init(&bo);
  bo.batch_size = 50;
  es_batch_result *r = NULL;

  make_corpus(c, 0);
  es_status rc = es_batch_upsert(s, c->d, NDOCS, &bo, &r);
  say_batch(&t, "first load", rc, r);
  es_batch_result_free(r);
  rc = es_batch_upsert(s, c->d, NDOCS, &bo, &r);
  say_batch(&t, "re-ingest unchanged", rc, r);
  es_batch_result_free(r);
  make_corpus(c, 1);
  rc = es_batch_upsert(s, c->d, NDOCS, &bo, &r);
  say_batch(&t, "re-ingest changed", rc, r);
  es_batch_result_free(r);

  /* A session whose input repeats documents, across its batches; one of
   * them claims a chunk id of another document. */
  es_doc dup[60];
  for (int i = 0; i < 60; i++) {
    dup[i] = c->d[(i * 7) % 30];
    if (i % 4 == 0) {
      dup[i].text = "rewritten in the session";
    }
  }
  es_chunk stolen = {.id = "doc005#0", .text = "mine", .embedding = c->cv[6][0], .dim = DIM};
  dup[59].id = "doc-thief";
  dup[59].chunks = &stolen;
  dup[59].n_chunks = 1;
  es_batch *b = NULL;
  ASSERT_OK(s, es_batch_begin(s, &bo, &b));
  rc = es_batch_add(b, dup, 30, NULL);
  es_status rc2 = es_batch_add(b, dup + 30, 30, NULL);
  ASSERT_INT_EQ(es_batch_end(b, &r), ES_OK);
  say(&t, "session adds: %s %s", es_status_name(rc), es_status_name(rc2));
  say_batch(&t, "session", ES_OK, r);
  for (size_t i = 0; i < r->n_failures; i++)
    say(&t, "  failure %s: %s", r->failures[i].id, r->failures[i].error);
  es_batch_result_free(r);

  /* A chunk id owned by a stored document (on Citus: on another shard). */
  es_chunk stolen2 = {.id = "doc007#1", .text = "mine", .embedding = c->cv[6][0], .dim = DIM};
  es_doc thief = c->d[20];
  thief.id = "doc-thief2";
  thief.chunks = &stolen2;
  thief.n_chunks = 1;
  rc = es_batch_upsert(s, &thief, 1, &bo, &r);
  say_batch(&t, "thief", rc, r);
  for (size_t i = 0; i < r->n_failures; i++)
    say(&t, "  failure %s: %s", r->failures[i].id, r->failures[i].error);
  es_batch_result_free(r);

  /* One document at a time. */
  ASSERT_OK(s, es_upsert(s, &c->d[11], NULL));
  es_doc one = c->d[12];
  one.text = "upserted alone";
  ASSERT_OK(s, es_upsert(s, &one, NULL));

  es_search_params p;
  float q[DIM] = {0.1f, -0.2f, 0.3f, 0.05f, -0.1f, 0.2f, 0, 0.1f};
  es_search_params_init(&p);
  p.vector = q;
  p.dim = DIM;
  p.k = 10;
  p.exact = 1;
  say_search(&t, s, "exact", &p);
  p.exact = 0;
  say_search(&t, s, "index", &p);
  p.workspace = "w1";
  say_search(&t, s, "workspace", &p);
  p.workspace = NULL;
  p.source_id = "s2";
  say_search(&t, s, "source", &p);
  p.source_id = NULL;
  p.filter_json = "{\"kind\": \"memo\"}";
  say_search(&t, s, "filter", &p);
  p.filter_json = NULL;
  p.like_id = "doc042";
  p.vector = NULL;
  p.dim = 0;
  say_search(&t, s, "like", &p);
  p.like_id = NULL;
  p.text = "apples markets";
  p.mode = ES_SEARCH_TEXT;
  say_search(&t, s, "text", &p);
  p.vector = q;
  p.dim = DIM;
  p.mode = ES_SEARCH_HYBRID;
  say_search(&t, s, "hybrid", &p);

  es_document *d = NULL;
  ASSERT_OK(s, es_get_document(s, "doc012", NULL, &d));
  say(&t, "get: %s %s %s chunks %zu", d->id, d->text, d->source_id, d->n_chunks);
  es_document_free(d);
  es_list_params lp;
  es_list_params_init(&lp);
  lp.limit = 7;
  lp.source_id = "s3";
  lp.after = "doc100";
  es_document_list *l = NULL;
  ASSERT_OK(s, es_list_documents(s, &lp, &l));
  char line[512] = "";
  for (size_t i = 0; i < l->n; i++)
    snprintf(line + strlen(line), sizeof line - strlen(line), " %s", l->documents[i].id);
  say(&t, "list:%s next %s", line, l->next_after ? l->next_after : "-");
  es_document_list_free(l);
  say_stats(&t, s, NULL);
  say_stats(&t, s, "w2");

  es_delete_options o;
  es_delete_options_init(&o);
  es_delete_result *dr = NULL;
  o.dry_run = 1;
  rc = es_delete_by_source(s, "s1", &o, &dr);
  say_delete(&t, "source dry run", rc, dr);
  o.dry_run = 0;
  o.no_cascade = 1;
  rc = es_delete_by_source(s, "s1", &o, &dr);
  say_delete(&t, "source restrict", rc, dr);
  o.no_cascade = 0;
  rc = es_delete_by_source(s, "s1", &o, &dr);
  say_delete(&t, "source", rc, dr);
  const char *ids[] = {"doc002", "doc003", "nope", "doc002"};
  rc = es_delete_documents(s, ids, 4, &o, &dr);
  say_delete(&t, "ids", rc, dr);
  rc = es_delete_by_filter(s, "{\"kind\": \"memo\", \"workspace\": \"w0\"}", &o, &dr);
  say_delete(&t, "filter", rc, dr);
  o.workspace = "w2";
  rc = es_delete_by_source(s, "s5", &o, &dr);
  say_delete(&t, "source in workspace", rc, dr);
  say_stats(&t, s, NULL);

  /* What a broken pipeline leaves: documents without a vector (old and
   * new), written by plain SQL. */
  PGconn *pg = th_connect(conninfo);
  th_pg_exec(pg, "INSERT INTO embeddings (id, text, source_id, created_at) VALUES "
                 "('nv1', 'x', 's5', now() - interval '2 hours'), "
                 "('nv2', 'y', 's5', now() - interval '2 hours'), "
                 "('nv3', 'z', 's5', now())");
  th_pg_exec(pg, "INSERT INTO chunks (id, document_id, text) VALUES "
                 "('nv1#0', 'nv1', 'a'), ('nv1#1', 'nv1', 'b'), ('nv3#0', 'nv3', 'c')");
  PQfinish(pg);
  say_stats(&t, s, NULL);
  es_cleanup_options co;
  es_cleanup_options_init(&co);
  co.dry_run = 1;
  es_cleanup_result *cr = NULL;
  ASSERT_OK(s, es_cleanup_orphaned(s, &co, &cr));
  say(&t, "cleanup dry run: chunks %lld documents %lld cleaned %lld",
      (long long)cr->orphaned_chunks, (long long)cr->orphaned_embeddings,
      (long long)cr->cleaned);
  es_cleanup_result_free(cr);
  co.dry_run = 0;
  co.batch_size = 1;
  ASSERT_OK(s, es_cleanup_orphaned(s, &co, &cr));
  say(&t, "cleanup: chunks %lld documents %lld cleaned %lld",
      (long long)cr->orphaned_chunks, (long long)cr->orphaned_embeddings,
      (long long)cr->cleaned);
  es_cleanup_result_free(cr);
  say_stats(&t, s, NULL);

  /* What the tool exports, byte for byte. */
  const char *ex[] = {"--db", conninfo, "export", "--embeddings", NULL};
  th_proc xp = th_cli(NULL, ex);
  say(&t, "export: exit %d %zu bytes fnv %llx", xp.status, strlen(xp.out),
      fnv(xp.out, strlen(xp.out)));
  th_proc_free(&xp);

  /* An adopted database's state: orphaned chunks under a NOT VALID key,
   * which cleanup deletes before it validates the key. */
  pg = th_connect(conninfo);
  th_pg_exec(pg, "ALTER TABLE chunks DROP CONSTRAINT chunks_document_id_fkey");
  th_pg_exec(pg, "INSERT INTO chunks (id, document_id, text) VALUES "
                 "('gone#0', 'gone', 'a'), ('gone#1', 'gone', 'b'), ('lost#0', 'lost', 'c')");
  th_pg_exec(pg, "ALTER TABLE chunks ADD CONSTRAINT chunks_document_id_fkey FOREIGN KEY "
                 "(document_id) REFERENCES embeddings (id) ON DELETE CASCADE NOT VALID");
  PQfinish(pg);
  es_stats *st = NULL;
  ASSERT_OK(s, es_stats_get(s, NULL, &st));
  bool told = false;
  for (size_t i = 0; i < st->n_health_reasons; i++)
    told = told || strstr(st->health_reasons[i], "NOT VALID") != NULL;
  say(&t, "stats before validation: orphaned %lld, NOT VALID told %d",
      (long long)st->orphaned_chunks, told);
  es_stats_free(st);
  co.min_age_s = 0;
  ASSERT_OK(s, es_cleanup_orphaned(s, &co, &cr));
  say(&t, "cleanup: chunks %lld documents %lld cleaned %lld",
      (long long)cr->orphaned_chunks, (long long)cr->orphaned_embeddings,
      (long long)cr->cleaned);
  for (size_t i = 0; i < cr->n_details; i++)
    if (strstr(cr->details[i], "foreign key"))
      say(&t, "  %s", cr->details[i]);
  es_cleanup_result_free(cr);
  pg = th_connect(conninfo);
  say(&t, "key validated: %lld",
      th_pg_int(pg, "SELECT count(*) FROM pg_constraint WHERE conname = "
                    "'chunks_document_id_fkey' AND convalidated"));
  PQfinish(pg);
  say_stats(&t, s, NULL);

  serve_part(&t, conninfo);
  mcp_part(&t, conninfo);
  say_stats(&t, s, NULL);

  /* Every operation above was recorded, here and by the tool's and the
   * servers' processes. */
  es_metrics_report *mr = NULL;
  ASSERT_OK(s, es_metrics_report_get(s, 0, &mr));
  for (size_t i = 0; i < mr->n; i++)
    if (strcmp(mr->ops[i].operation, "distribute") != 0)
      say(&t, "metrics %s: %lld errors %.3f", mr->ops[i].operation,
        (long long)mr->ops[i].count, mr->ops[i].error_rate);
  es_metrics_report_free(mr);
  free(c);
  return t.buf;
}

/* The store of a Citus cluster, initialised and distributed. */
static es_store *citus_store(citus *c, int shards) {
  es_store *s = NULL;
  ASSERT_OK(s, es_open(c->conninfo, &s));
  ASSERT_OK(s, es_init(s, DIM, ES_METRIC_COSINE, NULL));
  es_distribute_report *r = NULL;
  ASSERT_OK(s, es_distribute(s, shards, &r));
  ASSERT_INT_EQ(r->already, 0);
  es_distribute_report_free(r);
  return s;
}

TEST(every_command_on_a_distributed_store_answers_as_on_postgresql) {
  citus c;
  citus_start(&c);
  es_store *ps = th_open_init(DIM, ES_METRIC_COSINE);
  es_store *cs = citus_store(&c, 4);
  char *plain = scenario(ps, th_conninfo());
  char *dist = scenario(cs, c.conninfo);
  /* Some of what the scenario must have seen, so that two stores failing
   * alike cannot pass. */
  if (!strstr(plain, "first load: ES_OK inserted 240 updated 0 unchanged 0 failed 0") ||
      !strstr(plain, "re-ingest unchanged: ES_OK inserted 0 updated 0 unchanged 240") ||
      !strstr(plain, "failure doc-thief2: chunk id \"doc007#1\" belongs to document \"doc007\"") ||
      !strstr(plain, "session: ES_OK inserted 0 updated 15 unchanged 36 failed 1 duplicates 8") ||
      !strstr(plain, "counts check: drift 0") ||
      !strstr(plain, "key validated: 1") ||
      !strstr(plain, "http ingest: 200 {\"chunks_written\":1,") ||
      !strstr(plain, "mcp: 0 {\"isError\":false,\"structuredContent\":{\"chunks_removed\":0,"
                     "\"deleted\":1,\"dry_run\":false}}") ||
      !strstr(plain, "metrics search: 10 errors 0.000"))
    FAIL("the scenario on PostgreSQL went wrong:\n%s", plain);
  if (strcmp(plain, dist) != 0) {
    fprintf(stderr, "--- PostgreSQL\n%s--- Citus\n%s", plain, dist);
    FAIL("the distributed store answered differently (transcripts above)");
  }
  free(plain);
  free(dist);
  es_close(cs);
  es_close(ps);
  citus_stop(&c);
}

/* ---- concurrency and faults ------------------------------------------ */

typedef struct loader {
  const char *conninfo;
  corpus *c;
  int copies; /* how many times the corpus is loaded */
  pthread_barrier_t *go;
  es_status rc;
  es_batch_result *r;
  char err[512];
} loader;

/* Loads the corpus on a handle of its own, started together with the
 * other loader. */
static void *load(void *arg) {
  loader *l = arg;
  es_store *s = NULL;
  if (es_open(l->conninfo, &s) != ES_OK) {
    snprintf(l->err, sizeof l->err, "open: %s", es_errmsg(s));
    l->rc = ES_ECONNECT;
    pthread_barrier_wait(l->go);
    es_close(s);
    return NULL;
  }
  es_batch_options bo;
  es_batch_options_init(&bo);
  bo.batch_size = 40;
  pthread_barrier_wait(l->go);
  l->rc = es_batch_upsert(s, l->c->d, NDOCS, &bo, &l->r);
  if (l->rc != ES_OK)
    snprintf(l->err, sizeof l->err, "%s", es_errmsg(s));
  es_close(s);
  return NULL;
}

/* Two loaders of the same documents at once; what each wrote. */
static void load_twice(const char *conninfo, corpus *c, es_batch_result *out[2]) {
  pthread_barrier_t go;
  pthread_barrier_init(&go, NULL, 2);
  loader l[2];
  pthread_t t[2];
  for (int i = 0; i < 2; i++) {
    l[i] = (loader){.conninfo = conninfo, .c = c, .go = &go};
    ASSERT_INT_EQ(pthread_create(&t[i], NULL, load, &l[i]), 0);
  }
  for (int i = 0; i < 2; i++)
    pthread_join(t[i], NULL);
  pthread_barrier_destroy(&go);
  for (int i = 0; i < 2; i++) {
    if (l[i].rc != ES_OK)
      FAIL("loader %d: %s: %s", i, es_status_name(l[i].rc), l[i].err);
    out[i] = l[i].r;
  }
}

/* Every document of the store has exactly its two chunks, and the
 * counters agree with the rows. */
static void assert_whole(es_store *s, const char *conninfo, long long docs) {
  PGconn *pg = th_connect(conninfo);
  ASSERT_INT_EQ(th_pg_int(pg, "SELECT count(*) FROM embeddings"), docs);
  ASSERT_INT_EQ(th_pg_int(pg, "SELECT count(*) FROM chunks"), 2 * docs);
  ASSERT_INT_EQ(th_pg_int(pg, "SELECT count(*) FROM embeddings e WHERE "
                              "(SELECT count(*) FROM chunks c WHERE c.document_id = e.id) <> 2"),
                0);
  PQfinish(pg);
  es_count_check *cc = NULL;
  ASSERT_OK(s, es_check_counts(s, 0, &cc));
  ASSERT_INT_EQ((long long)cc->n_drift, 0);
  es_count_check_free(cc);
  es_stats *st = NULL;
  ASSERT_OK(s, es_stats_get(s, NULL, &st));
  ASSERT_INT_EQ(st->documents, docs);
  ASSERT_INT_EQ(st->chunks, 2 * docs);
  es_stats_free(st);
}

TEST(concurrent_loads_of_the_same_documents_on_a_distributed_store_stay_exact) {
  citus c;
  citus_start(&c);
  es_store *s = citus_store(&c, 4);
  corpus *co = calloc(1, sizeof *co);
  es_batch_result *r[2];

  /* A first load from two writers at once: each document is inserted by
   * one of them and found unchanged by the other (the COPY that collides
   * arrives as XX000 and goes to the merge path), none fails. */
  make_corpus(co, 0);
  load_twice(c.conninfo, co, r);
  for (int i = 0; i < 2; i++)
    fprintf(stderr, "loader %d: inserted %zu updated %zu unchanged %zu failed %zu "
            "duplicates %zu\n", i, r[i]->inserted, r[i]->updated, r[i]->unchanged,
            r[i]->failed, r[i]->duplicates);
  ASSERT_INT_EQ((long long)(r[0]->failed + r[1]->failed), 0);
  ASSERT_INT_EQ((long long)(r[0]->inserted + r[1]->inserted), NDOCS);
  ASSERT_INT_EQ((long long)(r[0]->unchanged + r[1]->unchanged), NDOCS);
  ASSERT_INT_EQ((long long)(r[0]->updated + r[1]->updated), 0);
  for (int i = 0; i < 2; i++)
    es_batch_result_free(r[i]);
  assert_whole(s, c.conninfo, NDOCS);

  /* The same changed re-ingest from two writers: each changed document is
   * updated once, then found unchanged. */
  make_corpus(co, 1);
  load_twice(c.conninfo, co, r);
  ASSERT_INT_EQ((long long)(r[0]->failed + r[1]->failed), 0);
  ASSERT_INT_EQ((long long)(r[0]->inserted + r[1]->inserted), 0);
  long long changed = 0;
  for (int i = 0; i < NDOCS; i++)
    changed += i % 10 == 3 || i % 15 == 0; /* see make_corpus */
  ASSERT_INT_EQ((long long)(r[0]->updated + r[1]->updated), changed);
  ASSERT_INT_EQ((long long)(r[0]->unchanged + r[1]->unchanged), 2 * NDOCS - changed);
  for (int i = 0; i < 2; i++)
    es_batch_result_free(r[i]);
  assert_whole(s, c.conninfo, NDOCS);
  free(co);
  es_close(s);
  citus_stop(&c);
}

typedef struct session_add {
  es_batch *b;
  const es_doc *docs;
  size_t n;
  es_status rc;
} session_add;

static void *add_in_thread(void *arg) {
  session_add *a = arg;
  a->rc = es_batch_add(a->b, a->docs, a->n, NULL);
  return NULL;
}

/* The one text value of sql || quote_literal(arg) on pg (malloc'd). */
static char *text_of(PGconn *pg, const char *sql, const char *arg) {
  char q[1024];
  snprintf(q, sizeof q, "%s$1", sql);
  const char *v[1] = {arg};
  PGresult *r = PQexecParams(pg, q, 1, NULL, v, NULL, NULL, 0);
  if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) < 1)
    FAIL("%s: %s", q, PQerrorMessage(pg));
  char *out = strdup(PQgetvalue(r, 0, 0));
  PQclear(r);
  return out;
}

/* Polls sql (one integer) on pg until it returns want; fails after 30 s. */
static void wait_on(PGconn *pg, const char *sql, long long want) {
  double deadline = th_now() + 30;
  long long got;
  while ((got = th_pg_int(pg, sql)) != want) {
    if (th_now() > deadline)
      FAIL("waited 30 s for %s to be %lld: it is %lld", sql, want, got);
    struct timespec ts = {0, 5000000};
    nanosleep(&ts, NULL); /* polling a condition, not guessing a delay */
  }
}

TEST(a_worker_stopped_mid_session_leaves_nothing_half_written_and_a_rerun_converges) {
  citus c;
  citus_start(&c);
  es_store *s = citus_store(&c, 4);
  corpus *co = calloc(1, sizeof *co);
  make_corpus(co, 0);
  es_batch_options bo;
  es_batch_options_init(&bo);
  bo.batch_size = 40;
  es_batch *b = NULL;
  ASSERT_OK(s, es_batch_begin(s, &bo, &b));
  ASSERT_INT_EQ(es_batch_add(b, co->d, 80, NULL), ES_OK);
  ASSERT_INT_EQ((long long)es_batch_totals(b)->inserted, 80);

  /* A worker goes away between two batches: every batch touches its
   * shards, so the session's next documents fail, saying so. */
  if (es_cluster_stop(c.node[2]) != ES_OK)
    FAIL("stopping a worker: %s", es_cluster_errmsg(c.node[2]));
  ASSERT_INT_EQ(es_batch_add(b, co->d + 80, 80, NULL), ES_ECONNECT);
  ASSERT_CONTAINS(es_errmsg(s), "remote node");
  ASSERT_INT_EQ((long long)es_batch_totals(b)->inserted, 80);
  ASSERT_INT_EQ((long long)es_batch_totals(b)->failed, 80);

  /* Back again, the same session goes on; then the worker dies in the
   * middle of a batch's transaction: its documents are written on the
   * other worker and its chunks wait for a lock on this one's shard. */
  if (es_cluster_start(c.node[2]) != ES_OK)
    FAIL("starting the worker again: %s", es_cluster_errmsg(c.node[2]));
  ASSERT_INT_EQ(es_batch_add(b, co->d + 80, 40, NULL), ES_OK);
  ASSERT_INT_EQ((long long)es_batch_totals(b)->inserted, 120);
  PGconn *co_pg = th_connect(c.conninfo);
  char shard[128], sql[512];
  char *name = text_of(co_pg, "SELECT 'chunks_' || s.shardid FROM pg_dist_shard s "
                                  "JOIN pg_dist_placement p USING (shardid) JOIN pg_dist_node n "
                                  "USING (groupid) WHERE s.logicalrelid = 'chunks'::regclass "
                                  "AND n.nodeport = 5432 AND n.nodename = ", c.sock[2]);
  snprintf(shard, sizeof shard, "%s", name);
  free(name);
  PQfinish(co_pg);
  PGconn *w = th_connect(es_cluster_conninfo(c.node[2]));
  th_pg_exec(w, "SET citus.enable_manual_changes_to_shards = on");
  th_pg_exec(w, "BEGIN");
  snprintf(sql, sizeof sql, "LOCK TABLE %s IN EXCLUSIVE MODE", shard);
  th_pg_exec(w, sql);
  session_add a = {.b = b, .docs = co->d + 120, .n = NDOCS - 120};
  pthread_t t;
  ASSERT_INT_EQ(pthread_create(&t, NULL, add_in_thread, &a), 0);
  PGconn *watch = th_connect(es_cluster_conninfo(c.node[2]));
  snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_locks WHERE NOT granted AND "
                            "relation = '%s'::regclass", shard);
  wait_on(watch, sql, 1);
  PQfinish(watch);
  watch = th_connect(es_cluster_conninfo(c.node[1])); /* the batch wrote there */
  ASSERT(th_pg_int(watch, "SELECT count(*) FROM pg_stat_activity WHERE backend_xid "
                          "IS NOT NULL AND pid <> pg_backend_pid()") > 0);
  PQfinish(watch);
  if (es_cluster_stop(c.node[2]) != ES_OK)
    FAIL("stopping the worker: %s", es_cluster_errmsg(c.node[2]));
  PQfinish(w);
  pthread_join(t, NULL);
  ASSERT(a.rc != ES_OK);
  es_batch_result *r = NULL;
  es_batch_end(b, &r);
  size_t landed = r->inserted;
  ASSERT_INT_EQ((long long)landed, 120);
  ASSERT_INT_EQ((long long)r->failed, 80 + NDOCS - 120);
  es_batch_result_free(r);

  /* What the session committed is whole, nothing else is there, and the
   * same input loaded again converges. */
  if (es_cluster_start(c.node[2]) != ES_OK)
    FAIL("starting the worker again: %s", es_cluster_errmsg(c.node[2]));
  assert_whole(s, c.conninfo, (long long)landed);
  ASSERT_OK(s, es_batch_upsert(s, co->d, NDOCS, &bo, &r));
  ASSERT_INT_EQ((long long)r->failed, 0);
  ASSERT_INT_EQ((long long)r->inserted, NDOCS - (long long)landed);
  ASSERT_INT_EQ((long long)r->unchanged, (long long)landed);
  es_batch_result_free(r);
  assert_whole(s, c.conninfo, NDOCS);
  free(co);
  es_close(s);
  citus_stop(&c);
}

/* ---- index builds, statistics, shard count ---------------------------- */

typedef struct delete_job {
  es_store *s;
  const char *source;
  es_status rc;
  es_delete_result *r;
} delete_job;

static void *delete_in_thread(void *arg) {
  delete_job *j = arg;
  j->rc = es_delete_by_source(j->s, j->source, NULL, &j->r);
  return NULL;
}

/* Sums, over the shards of rel, what sql (run on each, %s its name)
 * returns. */
static long long over_shards(PGconn *pg, const char *rel, const char *sql) {
  char q[1024];
  snprintf(q, sizeof q, "SELECT coalesce(sum(result::float8), -1)::bigint "
           "FROM run_command_on_shards('%s', $$%s$$) WHERE success", rel, sql);
  return th_pg_int(pg, q);
}

TEST(a_large_load_on_a_distributed_store_builds_its_index_after_and_analyses_the_shards) {
  citus c;
  citus_start(&c);
  es_store *s = citus_store(&c, 4);
  corpus *co = calloc(1, sizeof *co);
  make_corpus(co, 0);
  es_batch_options bo;
  es_batch_options_init(&bo);
  bo.batch_size = 40;
  bo.defer_index = ES_DEFER_ALWAYS; /* as for a first load of 10,000+ */
  es_batch_result *r = NULL;
  ASSERT_OK(s, es_batch_upsert(s, co->d, NDOCS, &bo, &r));
  ASSERT_INT_EQ((long long)r->inserted, NDOCS);
  ASSERT_INT_EQ((long long)r->failed, 0);
  /* The index was dropped before the load and built after it, on every
   * shard (dropping it statement by statement: Citus cannot send a string
   * of several DDL statements to the workers). */
  ASSERT_INT_EQ(r->index.built, 1);
  es_batch_result_free(r);
  PGconn *pg = th_connect(c.conninfo);
  ASSERT_INT_EQ(over_shards(pg, "embeddings",
                            "SELECT count(*) FROM pg_index i JOIN pg_class x ON "
                            "x.oid = i.indexrelid JOIN pg_am a ON a.oid = x.relam "
                            "WHERE i.indrelid = '%s'::regclass AND i.indisvalid "
                            "AND a.amname = 'hnsw'"),
                4);
  ASSERT_INT_EQ(over_shards(pg, "embeddings",
                            "SELECT count(*) FROM pg_index WHERE indisvalid "
                            "AND indrelid = '%s'::regclass"),
                4 * th_pg_int(pg, "SELECT count(*) FROM pg_index WHERE "
                                  "indrelid = 'embeddings'::regclass"));
  /* ANALYZE reached the shards, which hold the statistics. */
  ASSERT_INT_EQ(over_shards(pg, "embeddings",
                            "SELECT reltuples FROM pg_class WHERE oid = '%s'::regclass"),
                NDOCS);
  ASSERT_INT_EQ(over_shards(pg, "chunks",
                            "SELECT reltuples FROM pg_class WHERE oid = '%s'::regclass"),
                2 * NDOCS);
  PQfinish(pg);
  assert_whole(s, c.conninfo, NDOCS);

  /* Distributing again with another shard count is refused, nothing
   * changed; with the same count (or the default) it is a no-op. */
  es_distribute_report *dr = NULL;
  ASSERT_STATUS(s, es_distribute(s, 8, &dr), ES_EINVAL);
  ASSERT_CONTAINS(es_errmsg(s), "already distributed in 4 shards, not 8");
  ASSERT_OK(s, es_distribute(s, 4, &dr));
  ASSERT_INT_EQ(dr->already, 1);
  ASSERT_INT_EQ(dr->shards, 4);
  es_distribute_report_free(dr);
  ASSERT_OK(s, es_distribute(s, 0, &dr));
  ASSERT_INT_EQ(dr->already, 1);
  es_distribute_report_free(dr);
  assert_whole(s, c.conninfo, NDOCS);

  /* A counter trigger disabled behind the store's back: migrate mends it
   * on a distributed store as on PostgreSQL, with the Citus trigger
   * functions, and the counters are exact again. */
  pg = th_connect(c.conninfo);
  th_pg_exec(pg, "ALTER TABLE chunks DISABLE TRIGGER embstore_counts_chunks_del");
  th_pg_exec(pg, "DELETE FROM chunks WHERE document_id = 'doc001'");
  PQfinish(pg);
  es_init_report *ir = NULL;
  ASSERT_OK(s, es_migrate_report(s, &ir));
  ASSERT_INT_EQ(ir->counters_rebuilt, 1);
  es_init_report_free(ir);
  ASSERT_OK(s, es_migrate_report(s, &ir)); /* mended: nothing left to do */
  ASSERT_INT_EQ(ir->counters_rebuilt, 0);
  es_init_report_free(ir);
  es_count_check *cc = NULL;
  ASSERT_OK(s, es_check_counts(s, 0, &cc));
  ASSERT_INT_EQ((long long)cc->n_drift, 0);
  es_count_check_free(cc);
  es_delete_result *del = NULL;
  const char *gone[] = {"doc002"};
  ASSERT_OK(s, es_delete_documents(s, gone, 1, NULL, &del));
  ASSERT_INT_EQ(del->chunks_removed, 2);
  es_delete_result_free(del);
  es_stats *st = NULL;
  ASSERT_OK(s, es_stats_get(s, NULL, &st));
  ASSERT_INT_EQ(st->documents, NDOCS - 1);
  ASSERT_INT_EQ(st->chunks, 2 * NDOCS - 4);
  es_stats_free(st);
  ASSERT_OK(s, es_check_counts(s, 0, &cc));
  ASSERT_INT_EQ((long long)cc->n_drift, 0);
  es_count_check_free(cc);

  /* A delete by source locks the source's documents shard by shard as FOR
   * UPDATE would: a writer holding one of them moves it to another source
   * and commits while the delete waits; that document is not deleted, and
   * the counts say exactly what was. */
  PGconn *mover = th_connect(c.conninfo);
  th_pg_exec(mover, "BEGIN");
  th_pg_exec(mover, "UPDATE embeddings SET source_id = 'elsewhere' WHERE id = 'doc005'");
  delete_job dj = {s, "s5", ES_OK, NULL};
  pthread_t t;
  ASSERT_INT_EQ(pthread_create(&t, NULL, delete_in_thread, &dj), 0);
  PGconn *w1 = th_connect(es_cluster_conninfo(c.node[1])),
         *w2 = th_connect(es_cluster_conninfo(c.node[2]));
  static const char waiting[] = "SELECT count(*) FROM pg_locks WHERE NOT granted";
  double deadline = th_now() + 30;
  while (th_pg_int(w1, waiting) + th_pg_int(w2, waiting) < 1) {
    if (th_now() > deadline)
      FAIL("the delete never waited for the locked document");
    struct timespec ts = {0, 5000000};
    nanosleep(&ts, NULL); /* polling a condition, not guessing a delay */
  }
  PQfinish(w1);
  PQfinish(w2);
  th_pg_exec(mover, "COMMIT");
  pthread_join(t, NULL);
  ASSERT_INT_EQ(dj.rc, ES_OK);
  ASSERT_INT_EQ(dj.r->deleted, NDOCS / 6 - 1);
  ASSERT_INT_EQ(dj.r->chunks_removed, 2 * (NDOCS / 6 - 1));
  es_delete_result_free(dj.r);
  ASSERT_INT_EQ(th_pg_int(mover, "SELECT count(*) FROM chunks WHERE document_id = 'doc005'"), 2);
  ASSERT_INT_EQ(th_pg_int(mover, "SELECT count(*) FROM embeddings WHERE source_id = 's5'"), 0);
  PQfinish(mover);
  ASSERT_OK(s, es_check_counts(s, 0, &cc));
  ASSERT_INT_EQ((long long)cc->n_drift, 0);
  es_count_check_free(cc);
  free(co);
  es_close(s);
  citus_stop(&c);
}
