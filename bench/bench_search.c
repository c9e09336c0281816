/* bench_search.c - what each search mode costs, with and without a
 * selective metadata filter, next to plain vector search:
 *
 *   bench/run search [--docs N] [--dim D] [--queries Q] [--out FILE]
 *                    [--only SUBSTRING] [--keep]
 *
 * Loads N documents (default 100,000) of D dimensions (default 384) into
 * a store on the embedded cluster, with their HNSW and text indexes
 * built.  Each document's metadata carries a "tag" that 1% of them share
 * ({"tag": "t7"} selects 1,000 of 100,000), and its text, besides words
 * from the corpus's 20-word vocabulary that every text draws on, one word
 * that 0.1% of the documents share ("w42"): so a text query can be
 * selective ("w42") or match nearly everything (two common words).  Then
 * Q queries (default 300, after 30 to warm up; a tenth for unfiltered
 * common words, which rank nearly every document) per case through
 * es_search with the result cache off, k = 10, each with its own query
 * vector: vector, text and hybrid, unfiltered and with the 1% filter.
 * Reports p50 and p95 latency per case and each case's p50 against the
 * unfiltered vector search's, and checks that the filtered searches
 * return k hits that all match.  Writes the section "Search latency by
 * mode". */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "corpus.h"
#include "report.h"
#include "util.h"

#define K 10
#define WARMUP 30
#define TAGS 100      /* 1% share a tag */
#define RARE 1000     /* 0.1% share a rare word */

static es_cluster *cluster;

static void stop_all(void) {
  if (cluster)
    es_cluster_stop(cluster);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

typedef struct search_case {
  const char *name, *text, *filter;
  es_search_mode mode;
  double p50, p95;
  int queries; /* how many were timed */
} search_case;

/* Runs q queries of case c (after the warm-up) and records p50 and p95.
 * A text query of common words ranks nearly every document (seconds at
 * 100,000): a tenth as many of those, and a shorter warm-up. */
static void run_case(es_store *s, search_case *c, size_t dim, int q) {
  bool common = c->text && strcmp(c->text, "rare") != 0 && c->filter == NULL;
  if (common)
    q = q / 10 > 20 ? q / 10 : 20;
  c->queries = q;
  int warmup = common ? 3 : WARMUP;
  double *t = malloc((size_t)q * sizeof *t);
  float *v = malloc(dim * sizeof *v);
  if (t == NULL || v == NULL)
    bench_die("out of memory");
  for (int i = -warmup; i < q; i++) {
    es_search_params p;
    es_search_params_init(&p);
    p.k = K;
    p.mode = c->mode;
    p.filter_json = c->filter;
    char text[64];
    if (c->mode != ES_SEARCH_TEXT) {
      corpus_query_vector(v, dim, (unsigned)(i + warmup));
      p.vector = v;
      p.dim = dim;
    }
    if (c->text) { /* each query its own rare word when the case's is */
      if (strcmp(c->text, "rare") == 0)
        snprintf(text, sizeof text, "w%d", (i + warmup) % RARE);
      else
        snprintf(text, sizeof text, "%s", c->text);
      p.text = text;
    }
    es_results *r = NULL;
    double t0 = bench_now_s();
    if (es_search(s, &p, &r) != ES_OK)
      bench_die("%s: %s", c->name, es_errmsg(s));
    double dt = (bench_now_s() - t0) * 1e3;
    if (c->filter && r->n != K && c->mode != ES_SEARCH_TEXT)
      bench_die("%s: %zu hits, not %d", c->name, r->n, K);
    for (size_t h = 0; c->filter && h < r->n; h++)
      if (strstr(r->hits[h].metadata_json, "\"tag\": \"t7\"") == NULL)
        bench_die("%s: hit %s does not match the filter", c->name, r->hits[h].id);
    es_results_free(r);
    if (i >= 0)
      t[i] = dt;
  }
  qsort(t, (size_t)q, sizeof *t, cmp_double);
  c->p50 = t[q / 2];
  c->p95 = t[(q * 95) / 100];
  printf("  %-48s p50 %7.2f ms  p95 %7.2f ms (%d queries)\n", c->name, c->p50,
         c->p95, q);
  fflush(stdout);
  free(t);
  free(v);
}

int main(int argc, char **argv) {
  bench_on_die(stop_all);
  size_t docs = 100000, dim = 384;
  int queries = 300;
  const char *out = "BENCHMARKS.md", *only = NULL;
  bool keep = false;
  char cmd[256];
  bench_command_line(cmd, sizeof cmd, "search", argc, argv);
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--docs") && i + 1 < argc)
      docs = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--dim") && i + 1 < argc)
      dim = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--queries") && i + 1 < argc)
      queries = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--out") && i + 1 < argc)
      out = argv[++i];
    else if (!strcmp(argv[i], "--only") && i + 1 < argc)
      only = argv[++i]; /* the cases whose name contains it (no report) */
    else if (!strcmp(argv[i], "--keep"))
      keep = true; /* leave the cluster running, for a closer look */
    else
      bench_die("usage: bench/search [--docs N] [--dim D] [--queries Q] "
                "[--out FILE] [--only SUBSTRING] [--keep]");
  }
  if (docs < 1000 || queries < 20)
    bench_die("--docs at least 1000 (a 1%% filter must select k), --queries "
              "at least 20");
  char root[64] = "/tmp/es-bench-XXXXXX", home[128];
  if (mkdtemp(root) == NULL)
    bench_die("mkdtemp: %s", strerror(errno));
  chmod(root, 0711);
  snprintf(home, sizeof home, "%s/pg", root);
  if (es_cluster_open(home, &cluster) != ES_OK || es_cluster_start(cluster) != ES_OK)
    bench_die("cluster: %s", es_cluster_errmsg(cluster));

  es_options so;
  es_options_init(&so);
  so.conninfo = es_cluster_conninfo(cluster);
  so.cache_bytes = 0; /* every search reaches the database */
  es_store *s = NULL;
  if (es_open_opts(&so, &s) != ES_OK || es_init(s, (int)dim, ES_METRIC_COSINE, NULL) != ES_OK)
    bench_die("init: %s", es_errmsg(s));
  printf("generating and loading %zu documents of %zu dimensions...\n", docs, dim);
  fflush(stdout);
  corpus c;
  if (corpus_make(&c, docs, dim, 0, 10, 4) != 0)
    bench_die("out of memory");
  /* The tag and the rare word (the corpus's own texts and metadata are
   * fixed-size slots: these live beside them). */
  char (*meta)[96] = malloc(docs * sizeof *meta);
  char **texts = malloc(docs * sizeof *texts);
  if (meta == NULL || texts == NULL)
    bench_die("out of memory");
  for (size_t i = 0; i < docs; i++) {
    snprintf(meta[i], sizeof meta[i], "{\"workspace\": \"ws-%zu\", \"n\": %zu, "
             "\"tag\": \"t%zu\"}", i % 4, i, i % TAGS);
    if (asprintf(&texts[i], "%s w%zu", c.docs[i].text, i % RARE) < 0)
      bench_die("out of memory");
    c.docs[i].metadata_json = meta[i];
    c.docs[i].text = texts[i];
  }
  es_batch_options o;
  es_batch_options_init(&o);
  o.defer_index = ES_DEFER_ALWAYS;
  es_batch_result *r = NULL;
  double t0 = bench_now_s();
  if (es_batch_upsert(s, c.docs, c.n_docs, &o, &r) != ES_OK)
    bench_die("load: %s", es_errmsg(s));
  double load_s = bench_now_s() - t0;
  es_batch_result_free(r);
  for (size_t i = 0; i < docs; i++)
    free(texts[i]);
  free(texts);
  free(meta);
  corpus_free(&c);
  PGconn *pg = PQconnectdb(es_cluster_conninfo(cluster));
  PQclear(PQexec(pg, "VACUUM ANALYZE"));
  PGresult *vr = PQexec(pg, "SELECT extversion, current_setting('server_version') "
                            "FROM pg_extension WHERE extname = 'vector'");
  char versions[160];
  snprintf(versions, sizeof versions, "PostgreSQL %s, pgvector %s (hnsw.ef_search "
           "its default, 40; iterative scans relaxed_order)",
           PQgetvalue(vr, 0, 1), PQgetvalue(vr, 0, 0));
  PQclear(vr);
  PQfinish(pg);
  printf("loaded and indexed in %.1f s; %s\n", load_s, versions);

  static const char *const filter = "{\"tag\": \"t7\"}";
  search_case cases[] = {
      {"vector", NULL, NULL, ES_SEARCH_VECTOR, 0, 0, 0},
      {"vector, 1% filter", NULL, filter, ES_SEARCH_VECTOR, 0, 0, 0},
      {"text, rare word (0.1% match)", "rare", NULL, ES_SEARCH_TEXT, 0, 0, 0},
      {"text, rare word, 1% filter", "rare", filter, ES_SEARCH_TEXT, 0, 0, 0},
      {"text, two common words (most match)", "recall graph", NULL, ES_SEARCH_TEXT, 0, 0, 0},
      {"hybrid, rare word", "rare", NULL, ES_SEARCH_HYBRID, 0, 0, 0},
      {"hybrid, rare word, 1% filter", "rare", filter, ES_SEARCH_HYBRID, 0, 0, 0},
      {"hybrid, two common words", "recall graph", NULL, ES_SEARCH_HYBRID, 0, 0, 0},
      {"hybrid, two common words, 1% filter", "recall graph", filter,
       ES_SEARCH_HYBRID, 0, 0, 0},
  };
  size_t n_cases = sizeof cases / sizeof cases[0];
  for (size_t i = 0; i < n_cases; i++)
    if (only == NULL || strstr(cases[i].name, only) || i == 0)
      run_case(s, &cases[i], dim, queries);
  if (keep) {
    printf("kept: %s\n", es_cluster_conninfo(cluster));
    es_close(s);
    es_cluster_close(cluster); /* the server runs on */
    return 0;
  }
  if (only) {
    es_close(s);
    es_cluster_stop(cluster);
    es_cluster_close(cluster);
    return 0;
  }

  report rep;
  if (report_open(&rep) != 0)
    bench_die("out of memory");
  fprintf(rep.f, "## Search latency by mode\n\n"
          "Produced by `%s` on %s (2 cores; %s; the embedded cluster as embstore "
          "configures it).  %zu documents of %zu dimensions with their HNSW and "
          "text indexes, loaded in %.0f s.  Each document's metadata has a tag "
          "that 1%% of them share; its text draws on a 20-word vocabulary plus "
          "one word that 0.1%% share.  %d queries per case after %d to warm up "
          "(a tenth as many, after 3, for unfiltered common words, which rank "
          "nearly every document), "
          "each with its own query vector (and rare word), k = %d, through "
          "es_search in the process with the result cache off.  Ratios are "
          "against the unfiltered vector search's p50 in the same run.\n\n"
          "| case | queries | p50 | p95 | p50 vs vector |\n|---|---:|---:|---:|---:|\n",
          cmd, rep.when, versions, docs, dim, load_s, queries, WARMUP, K);
  for (size_t i = 0; i < n_cases; i++)
    fprintf(rep.f, "| %s | %d | %.2f ms | %.2f ms | %.2f× |\n", cases[i].name,
            cases[i].queries, cases[i].p50, cases[i].p95,
            cases[i].p50 / cases[0].p50);
  if (report_close(&rep, out, "Search latency by mode") != 0)
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
