/* bench_citus.c - one PostgreSQL next to a Citus cluster on the same
 * machine, at several shard counts:
 *
 *   bench/run citus [--docs N] [--dim D] [--queries Q] [--shards LIST]
 *                   [--out FILE]
 *
 * For each configuration (a plain embedded cluster, then a coordinator
 * and two workers, each an embedded cluster of its own with citus
 * preloaded, joined over their Unix sockets, the store distributed into
 * each shard count of LIST, default "4,8,32"), a fresh store is loaded
 * with N documents (default 20,000) of D dimensions (default 384), two
 * chunks each, in 20 sources and 4 workspaces, through es_batch_upsert in
 * the process, and timed: the first load (HNSW index built), the same
 * input again (unchanged), with every tenth text changed, Q kNN searches
 * (default 300, after 30 to warm up; k = 10, result cache off) unfiltered
 * and within one workspace, their throughput from two threads with a
 * handle each, recall@10 of the index against an exact scan, es_stats_get,
 * and deleting one source (N/20 documents).  Without the citus extension
 * it says so and writes nothing.  Writes the section "Citus: one node
 * against a distributed store". */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "corpus.h"
#include "report.h"
#include "util.h"

#define K 10
#define WARMUP 30
#define NODES 3         /* a coordinator and two workers */
#define MAX_CONFIGS 8
#define RECALL_QUERIES 50
#define STATS_REPEAT 15

static es_cluster *node[NODES];

static void stop_all(void) {
  for (int i = NODES - 1; i >= 0; i--)
    if (node[i]) {
      es_cluster_stop(node[i]);
      es_cluster_close(node[i]);
      node[i] = NULL;
    }
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

typedef struct config {
  int shards; /* 0: plain PostgreSQL */
  double load_s, unchanged_s, changed_s, delete_s, stats_ms;
  double knn_p50, knn_p95, ws_p50, qps, recall;
  long long deleted;
} config;

static void exec_or_die(PGconn *pg, const char *sql) {
  PGresult *r = PQexec(pg, sql);
  if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
    bench_die("%s: %s", sql, PQerrorMessage(pg));
  PQclear(r);
}

/* Starts n nodes under root/tag-i (citus preloaded when n > 1) and, for a
 * Citus cluster, joins the workers to node 0. */
static void start_nodes(const char *root, const char *tag, int n) {
  if (n > 1)
    setenv("EMBSTORE_PG_OPTIONS", "-c shared_preload_libraries=citus", 1);
  else
    unsetenv("EMBSTORE_PG_OPTIONS");
  char sock[NODES][PATH_MAX];
  for (int i = 0; i < n; i++) {
    char home[PATH_MAX];
    snprintf(home, sizeof home, "%s/%s-%d", root, tag, i);
    if (es_cluster_open(home, &node[i]) != ES_OK || es_cluster_start(node[i]) != ES_OK)
      bench_die("node %d: %s", i, es_cluster_errmsg(node[i]));
    PQconninfoOption *o = PQconninfoParse(es_cluster_conninfo(node[i]), NULL);
    for (PQconninfoOption *p = o; p && p->keyword; p++)
      if (strcmp(p->keyword, "host") == 0 && p->val)
        snprintf(sock[i], sizeof sock[i], "%s", p->val);
    PQconninfoFree(o);
    if (n > 1) {
      PGconn *pg = PQconnectdb(es_cluster_conninfo(node[i]));
      exec_or_die(pg, "CREATE EXTENSION IF NOT EXISTS citus");
      PQfinish(pg);
    }
  }
  if (n == 1)
    return;
  PGconn *co = PQconnectdb(es_cluster_conninfo(node[0]));
  char sql[PATH_MAX + 96];
  snprintf(sql, sizeof sql, "SELECT citus_set_coordinator_host('%s', 5432)", sock[0]);
  exec_or_die(co, sql);
  for (int i = 1; i < n; i++) {
    snprintf(sql, sizeof sql, "SELECT citus_add_node('%s', 5432)", sock[i]);
    exec_or_die(co, sql);
  }
  PQfinish(co);
}

static char versions[200];

/* Names the versions; says so and exits when citus is not there. */
static void probe(const char *conninfo, const char *root) {
  PGconn *pg = PQconnectdb(conninfo);
  PGresult *vr = PQexec(pg, "SELECT current_setting('server_version'), "
                            "(SELECT default_version FROM pg_available_extensions "
                            "WHERE name = 'vector'), (SELECT default_version FROM "
                            "pg_available_extensions WHERE name = 'citus')");
  if (PQresultStatus(vr) != PGRES_TUPLES_OK)
    bench_die("versions: %s", PQerrorMessage(pg));
  bool ok = !PQgetisnull(vr, 0, 2);
  snprintf(versions, sizeof versions, "PostgreSQL %s, pgvector %s, Citus %s",
           PQgetvalue(vr, 0, 0), PQgetvalue(vr, 0, 1), ok ? PQgetvalue(vr, 0, 2) : "-");
  PQclear(vr);
  PQfinish(pg);
  if (ok)
    return;
  printf("skipped: the citus extension is not installed for this PostgreSQL "
         "(Debian 12 does not package it; build Citus 13.2 from its source); "
         "nothing written\n");
  stop_all();
  char rm[128];
  snprintf(rm, sizeof rm, "rm -rf %s", root);
  if (system(rm) != 0)
    fprintf(stderr, "bench: could not remove %s\n", root);
  exit(0);
}

static double timed_upsert(es_store *s, const corpus *c, const char *what,
                           size_t want_written) {
  es_batch_result *r = NULL;
  double t0 = bench_now_s();
  if (es_batch_upsert(s, c->docs, c->n_docs, NULL, &r) != ES_OK)
    bench_die("%s: %s", what, es_errmsg(s));
  double dt = bench_now_s() - t0;
  if (r->inserted + r->updated != want_written || r->failed != 0)
    bench_die("%s: wrote %zu, failed %zu, not %zu", what, r->inserted + r->updated,
              r->failed, want_written);
  es_batch_result_free(r);
  return dt;
}

/* One search for the K nearest to v (exactly, or within workspace ws). */
static es_results *search(es_store *s, const float *v, size_t dim, int exact,
                          const char *ws) {
  es_search_params p;
  es_search_params_init(&p);
  p.vector = v;
  p.dim = dim;
  p.k = K;
  p.exact = exact;
  p.workspace = ws;
  es_results *r = NULL;
  if (es_search(s, &p, &r) != ES_OK)
    bench_die("search: %s", es_errmsg(s));
  return r;
}

/* Hit ids of one search, into ids (K each). */
static size_t search_ids(es_store *s, const float *v, size_t dim, int exact,
                         char ids[K][32]) {
  es_results *r = search(s, v, dim, exact, NULL);
  size_t n = r->n;
  for (size_t i = 0; i < n; i++)
    snprintf(ids[i], sizeof ids[i], "%s", r->hits[i].id);
  es_results_free(r);
  return n;
}

/* p50 and p95 of q searches (after WARMUP), within workspace ws or not. */
static void time_knn(es_store *s, size_t dim, int q, const char *ws, double *p50,
                     double *p95) {
  double *t = malloc((size_t)q * sizeof *t);
  float *v = malloc(dim * sizeof *v);
  if (t == NULL || v == NULL)
    bench_die("out of memory");
  for (int i = -WARMUP; i < q; i++) {
    corpus_query_vector(v, dim, (unsigned)(i + WARMUP));
    double t0 = bench_now_s();
    es_results *r = search(s, v, dim, 0, ws);
    double dt = (bench_now_s() - t0) * 1e3;
    if (r->n != K)
      bench_die("search: %zu hits, not %d", r->n, K);
    es_results_free(r);
    if (i >= 0)
      t[i] = dt;
  }
  qsort(t, (size_t)q, sizeof *t, cmp_double);
  *p50 = t[q / 2];
  *p95 = t[(q * 95) / 100];
  free(t);
  free(v);
}

typedef struct qps_arg {
  const char *conninfo;
  size_t dim;
  int q, first;
  double seconds;
} qps_arg;

static void *qps_thread(void *arg) {
  qps_arg *a = arg;
  es_options o;
  es_options_init(&o);
  o.conninfo = a->conninfo;
  o.cache_bytes = 0;
  es_store *s = NULL;
  if (es_open_opts(&o, &s) != ES_OK)
    bench_die("open: %s", es_errmsg(s));
  float *v = malloc(a->dim * sizeof *v);
  char ids[K][32];
  double t0 = bench_now_s();
  for (int i = 0; i < a->q; i++) {
    corpus_query_vector(v, a->dim, (unsigned)(a->first + i));
    search_ids(s, v, a->dim, 0, ids);
  }
  a->seconds = bench_now_s() - t0;
  free(v);
  es_close(s);
  return NULL;
}

/* Searches a second from two threads, each with its own handle. */
static double measure_qps(const char *conninfo, size_t dim, int q) {
  qps_arg a[2];
  pthread_t t[2];
  double t0 = bench_now_s();
  for (int i = 0; i < 2; i++) {
    a[i] = (qps_arg){.conninfo = conninfo, .dim = dim, .q = q, .first = 1000 + i * q};
    if (pthread_create(&t[i], NULL, qps_thread, &a[i]) != 0)
      bench_die("pthread_create failed");
  }
  for (int i = 0; i < 2; i++)
    pthread_join(t[i], NULL);
  return 2.0 * q / (bench_now_s() - t0);
}

/* recall@K of the index against an exact scan of the same store. */
static double measure_recall(es_store *s, size_t dim) {
  float *v = malloc(dim * sizeof *v);
  char got[K][32], want[K][32];
  size_t hit = 0, total = 0;
  for (unsigned i = 0; i < RECALL_QUERIES; i++) {
    corpus_query_vector(v, dim, 5000 + i);
    size_t nw = search_ids(s, v, dim, 1, want);
    size_t ng = search_ids(s, v, dim, 0, got);
    for (size_t a = 0; a < nw; a++)
      for (size_t b = 0; b < ng; b++)
        if (strcmp(want[a], got[b]) == 0) {
          hit++;
          break;
        }
    total += nw;
  }
  free(v);
  return total ? (double)hit / (double)total : 0;
}

static double time_stats(es_store *s, long long want_docs) {
  double t[STATS_REPEAT];
  for (int i = 0; i < STATS_REPEAT; i++) {
    es_stats *st = NULL;
    double t0 = bench_now_s();
    if (es_stats_get(s, NULL, &st) != ES_OK)
      bench_die("stats: %s", es_errmsg(s));
    t[i] = (bench_now_s() - t0) * 1e3;
    if (st->documents != want_docs)
      bench_die("stats: %lld documents, not %lld", (long long)st->documents, want_docs);
    es_stats_free(st);
  }
  qsort(t, STATS_REPEAT, sizeof *t, cmp_double);
  return t[STATS_REPEAT / 2];
}

/* One configuration, from fresh servers to their stop. */
static void run_config(config *cf, const char *root, size_t docs, size_t dim, int q) {
  char tag[32];
  snprintf(tag, sizeof tag, cf->shards ? "citus%d" : "plain", cf->shards);
  start_nodes(root, tag, cf->shards ? NODES : 1);
  const char *conninfo = es_cluster_conninfo(node[0]);
  if (cf->shards == 0)
    probe(conninfo, root);
  es_options so;
  es_options_init(&so);
  so.conninfo = conninfo;
  so.cache_bytes = 0; /* every search reaches the database */
  es_store *s = NULL;
  if (es_open_opts(&so, &s) != ES_OK || es_init(s, (int)dim, ES_METRIC_COSINE, NULL) != ES_OK)
    bench_die("init: %s", es_errmsg(s));
  if (cf->shards) {
    es_distribute_report *dr = NULL;
    if (es_distribute(s, cf->shards, &dr) != ES_OK)
      bench_die("distribute: %s", es_errmsg(s));
    es_distribute_report_free(dr);
    es_close(s); /* a handle opened after distribution, as the API asks */
    if (es_open_opts(&so, &s) != ES_OK)
      bench_die("open: %s", es_errmsg(s));
  }
  printf("%s:\n", cf->shards ? tag : "plain PostgreSQL");
  fflush(stdout);
  corpus c;
  if (corpus_make(&c, docs, dim, 2, 20, 4) != 0)
    bench_die("out of memory");
  cf->load_s = timed_upsert(s, &c, "first load", docs);
  cf->unchanged_s = timed_upsert(s, &c, "unchanged", 0);
  corpus_change(&c);
  cf->changed_s = timed_upsert(s, &c, "changed", docs / 10);
  printf("  load %.2f s, unchanged %.2f s, 10%% changed %.2f s\n", cf->load_s,
         cf->unchanged_s, cf->changed_s);
  fflush(stdout);
  time_knn(s, dim, q, NULL, &cf->knn_p50, &cf->knn_p95);
  double ws95;
  time_knn(s, dim, q, "ws-1", &cf->ws_p50, &ws95);
  cf->qps = measure_qps(conninfo, dim, q);
  cf->recall = measure_recall(s, dim);
  cf->stats_ms = time_stats(s, (long long)docs);
  printf("  kNN p50 %.2f ms p95 %.2f ms, workspace p50 %.2f ms, %.0f searches/s, "
         "recall@10 %.3f, stats %.1f ms\n", cf->knn_p50, cf->knn_p95, cf->ws_p50,
         cf->qps, cf->recall, cf->stats_ms);
  fflush(stdout);
  es_delete_result *r = NULL;
  double t0 = bench_now_s();
  if (es_delete_by_source(s, c.docs[0].source_id, NULL, &r) != ES_OK)
    bench_die("delete: %s", es_errmsg(s));
  cf->delete_s = bench_now_s() - t0;
  cf->deleted = r->deleted;
  es_delete_result_free(r);
  printf("  delete one source (%lld documents) %.3f s\n", cf->deleted, cf->delete_s);
  fflush(stdout);
  corpus_free(&c);
  es_close(s);
  stop_all();
}

int main(int argc, char **argv) {
  bench_on_die(stop_all);
  size_t docs = 20000, dim = 384;
  int queries = 300;
  const char *out = "BENCHMARKS.md", *shards = "4,8,32";
  char cmd[256];
  bench_command_line(cmd, sizeof cmd, "citus", argc, argv);
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--docs") && i + 1 < argc)
      docs = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--dim") && i + 1 < argc)
      dim = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--queries") && i + 1 < argc)
      queries = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--shards") && i + 1 < argc)
      shards = argv[++i];
    else if (!strcmp(argv[i], "--out") && i + 1 < argc)
      out = argv[++i];
    else
      bench_die("usage: bench/citus [--docs N] [--dim D] [--queries Q] "
                "[--shards LIST] [--out FILE]");
  }
  if (docs < 1000 || queries < 20 || dim < 2)
    bench_die("--docs at least 1000, --queries at least 20, --dim at least 2");
  config cf[MAX_CONFIGS] = {{0}};
  size_t n = 1; /* cf[0]: plain PostgreSQL */
  for (const char *p = shards; *p && n < MAX_CONFIGS;) {
    char *end;
    long v = strtol(p, &end, 10);
    if (end == p || v < 1 || v > 1024 || (*end && *end != ','))
      bench_die("--shards: a comma-separated list of counts from 1 to 1024");
    cf[n++].shards = (int)v;
    p = *end ? end + 1 : end;
  }

  char root[64] = "/tmp/es-bench-XXXXXX";
  if (mkdtemp(root) == NULL)
    bench_die("mkdtemp: %s", strerror(errno));
  chmod(root, 0711);
  for (size_t i = 0; i < n; i++)
    run_config(&cf[i], root, docs, dim, queries);

  report rep;
  if (report_open(&rep) != 0)
    bench_die("out of memory");
  fprintf(rep.f, "## Citus: one node against a distributed store\n\n"
          "Produced by `%s` on %s (2 cores; %s).  All on this one machine: the "
          "plain store on one embedded cluster; the distributed one on a coordinator "
          "and two workers, three embedded clusters joined over Unix sockets, so "
          "the figures show what distribution costs, not what more machines "
          "bring.  A fresh store per column: %zu documents of %zu dimensions, two "
          "chunks each, 20 sources, 4 workspaces, through es_batch_upsert in the "
          "process.  kNN: k = %d, %d queries after %d to warm up, result cache "
          "off; throughput from two threads with a handle each; recall@10 of the "
          "index against an exact scan of the same store (%d queries).  Ratios "
          "are against the plain store in the same run.\n\n| |",
          cmd, rep.when, versions, docs, dim, K, queries, WARMUP, RECALL_QUERIES);
  for (size_t i = 0; i < n; i++)
    if (cf[i].shards)
      fprintf(rep.f, " Citus, %d shards |", cf[i].shards);
    else
      fprintf(rep.f, " PostgreSQL |");
  fprintf(rep.f, "\n|---|");
  for (size_t i = 0; i < n; i++)
    fprintf(rep.f, "---:|");
  fprintf(rep.f, "\n");
#define ROW(label, fmt, field, ratio)                                          \
  do {                                                                         \
    fprintf(rep.f, "| %s |", label);                                           \
    for (size_t i = 0; i < n; i++) {                                           \
      fprintf(rep.f, " " fmt, cf[i].field);                                    \
      if (ratio && i > 0)                                                      \
        fprintf(rep.f, " (%.1f×)", cf[i].field / cf[0].field);                 \
      fprintf(rep.f, " |");                                                    \
    }                                                                          \
    fprintf(rep.f, "\n");                                                      \
  } while (0)
  ROW("first load, index built", "%.2f s", load_s, 1);
  ROW("re-ingest, unchanged", "%.2f s", unchanged_s, 1);
  ROW("re-ingest, 10% changed", "%.2f s", changed_s, 1);
  ROW("kNN p50", "%.2f ms", knn_p50, 1);
  ROW("kNN p95", "%.2f ms", knn_p95, 1);
  ROW("kNN p50, one workspace (25%)", "%.2f ms", ws_p50, 1);
  ROW("kNN throughput, 2 threads", "%.0f /s", qps, 1);
  ROW("recall@10", "%.3f", recall, 0);
  ROW("stats p50", "%.1f ms", stats_ms, 1);
  ROW("delete one source", "%.3f s", delete_s, 1);
#undef ROW
  fprintf(rep.f, "\nOne source holds %lld documents.\n", cf[0].deleted);
  if (report_close(&rep, out, "Citus: one node against a distributed store") != 0)
    bench_die("cannot write %s: %s", out, strerror(errno));
  char rm[128];
  snprintf(rm, sizeof rm, "rm -rf %s", root);
  if (system(rm) != 0)
    fprintf(stderr, "bench: could not remove %s\n", root);
  return 0;
}
