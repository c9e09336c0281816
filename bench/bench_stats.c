/* bench_stats.c - how fast `stats` answers on a large store, next to the
 * plain COUNT(*) / SELECT DISTINCT way of getting the same numbers.
 *
 *   bench/run stats [--docs N] [--chunks C] [--dim D] [--out FILE]
 *
 * Loads N documents (default 1,000,000) with C chunks each (default 4)
 * through es_batch_upsert, so that the counters are kept by the triggers
 * as in real use, then times es_stats_get() for the whole store and
 * for one workspace against the equivalent plain queries.  The vectors are
 * small (16 dimensions by default): the figures measure counting, not
 * vector size.  Appends a section to the report file. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "corpus.h"
#include "report.h"
#include "util.h"

#define REPEAT 15

static es_cluster *cluster;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* What giving up stops first. */
static void stop_all(void) {
  if (cluster)
    es_cluster_stop(cluster);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return v[n / 2];
}

/* Times es_stats_get; checks its counts against want_docs. */
static double time_stats(es_store *s, const char *ws, long long want_docs) {
  double t[REPEAT];
  for (int i = 0; i < REPEAT; i++) {
    es_stats *st = NULL;
    double t0 = now_ms();
    if (es_stats_get(s, ws, &st) != ES_OK)
      bench_die("stats: %s", es_errmsg(s));
    t[i] = now_ms() - t0;
    if (st->documents != want_docs)
      bench_die("stats counted %lld documents, COUNT(*) %lld",
          (long long)st->documents, want_docs);
    es_stats_free(st);
  }
  return median(t, REPEAT);
}

/* The plain way: COUNT(*) and GROUP BY over the tables. */
static double time_plain(PGconn *pg, const char *ws, long long *docs) {
  static const char *const whole[] = {
      "SELECT count(*) FROM embeddings",
      "SELECT count(*) FROM chunks",
      "SELECT count(DISTINCT source_id) FROM embeddings",
      ("SELECT e.source_id, count(DISTINCT e.id), count(c.id) FROM embeddings e "
       "LEFT JOIN chunks c ON c.document_id = e.id GROUP BY 1"),
      "SELECT count(*) FROM embeddings WHERE embedding IS NULL"};
  static const char *const one[] = {
      "SELECT count(*) FROM embeddings WHERE metadata->>'workspace' = $1",
      ("SELECT count(*) FROM chunks c JOIN embeddings e ON e.id = c.document_id "
       "WHERE e.metadata->>'workspace' = $1"),
      ("SELECT count(DISTINCT source_id) FROM embeddings WHERE "
       "metadata->>'workspace' = $1"),
      ("SELECT e.source_id, count(DISTINCT e.id), count(c.id) FROM embeddings e "
       "LEFT JOIN chunks c ON c.document_id = e.id WHERE "
       "e.metadata->>'workspace' = $1 GROUP BY 1"),
      ("SELECT count(*) FROM embeddings WHERE embedding IS NULL AND "
       "metadata->>'workspace' = $1")};
  double t[3];
  for (int i = 0; i < 3; i++) {
    double t0 = now_ms();
    for (int q = 0; q < 5; q++) {
      const char *v[1] = {ws};
      PGresult *r = PQexecParams(pg, ws ? one[q] : whole[q], ws ? 1 : 0, NULL,
                                 v, NULL, NULL, 0);
      if (PQresultStatus(r) != PGRES_TUPLES_OK)
        bench_die("plain query: %s", PQresultErrorMessage(r));
      if (q == 0)
        *docs = atoll(PQgetvalue(r, 0, 0));
      PQclear(r);
    }
    t[i] = now_ms() - t0;
  }
  return median(t, 3);
}

int main(int argc, char **argv) {
  bench_on_die(stop_all);
  size_t docs = 1000000, chunks = 4, dim = 16;
  const char *out = "BENCHMARKS.md";
  char cmd[256];
  bench_command_line(cmd, sizeof cmd, "stats", argc, argv);
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--docs") && i + 1 < argc)
      docs = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--chunks") && i + 1 < argc)
      chunks = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--dim") && i + 1 < argc)
      dim = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--out") && i + 1 < argc)
      out = argv[++i];
    else
      bench_die("usage: bench/stats [--docs N] [--chunks C] [--dim D] [--out FILE]");
  }
  char root[64] = "/tmp/es-bench-XXXXXX", home[128];
  if (mkdtemp(root) == NULL)
    bench_die("mkdtemp: %s", strerror(errno));
  chmod(root, 0711);
  snprintf(home, sizeof home, "%s/pg", root);
  setenv("EMBSTORE_PG_OPTIONS",
         "-c shared_buffers=2GB -c max_wal_size=8GB -c maintenance_work_mem=1GB",
         0);
  if (es_cluster_open(home, &cluster) != ES_OK || es_cluster_start(cluster) != ES_OK)
    bench_die("cluster: %s", es_cluster_errmsg(cluster));

  es_store *s = NULL;
  if (es_open(es_cluster_conninfo(cluster), &s) != ES_OK ||
      es_init(s, (int)dim, ES_METRIC_COSINE, NULL) != ES_OK)
    bench_die("init: %s", es_errmsg(s));
  printf("generating and loading %zu documents with %zu chunks each...\n", docs,
         chunks);
  fflush(stdout);
  corpus c;
  if (corpus_make(&c, docs, dim, chunks, 100, 10) != 0)
    bench_die("out of memory");
  es_batch_options o;
  es_batch_options_init(&o);
  o.defer_index = ES_DEFER_ALWAYS;
  es_batch_result *r = NULL;
  double t0 = now_ms();
  if (es_batch_upsert(s, c.docs, c.n_docs, &o, &r) != ES_OK)
    bench_die("load: %s", es_errmsg(s));
  double load_s = (now_ms() - t0) / 1e3;
  es_batch_result_free(r);
  corpus_free(&c);
  printf("loaded in %.1f s\n", load_s);

  PGconn *pg = PQconnectdb(es_cluster_conninfo(cluster));
  PQclear(PQexec(pg, "VACUUM ANALYZE"));
  long long all_docs = 0, ws_docs = 0;
  double plain_all = time_plain(pg, NULL, &all_docs);
  double plain_ws = time_plain(pg, "ws-3", &ws_docs);
  double st_all = time_stats(s, NULL, all_docs);
  double st_ws = time_stats(s, "ws-3", ws_docs);
  PGresult *q = PQexec(pg, "SELECT count(*) FROM embstore_counts");
  long long delta_rows = atoll(PQgetvalue(q, 0, 0));
  PQclear(q);
  PQfinish(pg);
  printf("stats: whole store %.1f ms (plain %.0f ms), workspace %.1f ms "
         "(plain %.0f ms); %lld counter rows\n",
         st_all, plain_all, st_ws, plain_ws, delta_rows);

  report rep;
  if (report_open(&rep) != 0)
    bench_die("out of memory");
  fprintf(rep.f, "## Statistics\n\n"
             "Produced by `%s` on %s: %zu documents and %zu chunks "
             "(%zu dimensions), 100 sources, 10 workspaces, loaded through "
             "es_batch_upsert in %.0f s so that the triggers kept the "
             "counters (%lld counter rows after the load).  Median of %d calls "
             "(plain queries: median of 3).\n\n"
             "| question | embstore stats | plain COUNT(*) / DISTINCT | ratio |\n"
             "|---|---:|---:|---:|\n"
             "| whole store | %.1f ms | %.0f ms | %.0f× |\n"
             "| one workspace | %.1f ms | %.0f ms | %.0f× |\n",
          cmd, rep.when, docs, docs * chunks, dim, load_s, delta_rows, REPEAT,
          st_all, plain_all, plain_all / st_all, st_ws, plain_ws,
          plain_ws / st_ws);
  if (report_close(&rep, out, "Statistics") != 0)
    bench_die("cannot write %s: %s", out, strerror(errno));
  es_close(s);
  es_cluster_stop(cluster);
  es_cluster_close(cluster);
  char rm[128];
  snprintf(rm, sizeof rm, "rm -rf %s", root);
  if (system(rm) != 0)
    fprintf(stderr, "bench: could not remove %s\n", root);
  return 0;
}
