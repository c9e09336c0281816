/* prom.c - GET /metrics: the Prometheus text exposition (version 0.0.4)
 * of the server's requests (counts by route and status, latency
 * histograms by route), the library's operation percentiles, the pool,
 * the search cache, and the store's documents and chunks.  The program
 * never calls setlocale, so numbers print with a '.'. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

#define MAX_SERIES 256
static const double bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                0.25,  0.5,    1,     2.5,  5,    10};
#define N_BOUNDS (sizeof bounds / sizeof bounds[0])

typedef struct count {
  const char *route; /* a route's name: static */
  int status;
  uint64_t n;
} count;

typedef struct histo {
  const char *route;
  uint64_t bucket[N_BOUNDS + 1]; /* the last: +Inf */
  uint64_t n;
  double sum;
} histo;

struct prom {
  pthread_mutex_t mu;
  count counts[MAX_SERIES];
  size_t n_counts;
  histo histos[MAX_SERIES];
  size_t n_histos;
};

prom *prom_new(void) {
  prom *p = calloc(1, sizeof *p);
  if (p)
    pthread_mutex_init(&p->mu, NULL);
  return p;
}

void prom_free(prom *p) {
  if (p == NULL)
    return;
  pthread_mutex_destroy(&p->mu);
  free(p);
}

void prom_observe(prom *p, const char *name, int status, double seconds) {
  if (p == NULL)
    return;
  pthread_mutex_lock(&p->mu);
  size_t i = 0;
  while (i < p->n_counts && (p->counts[i].route != name || p->counts[i].status != status))
    i++;
  if (i == p->n_counts && i < MAX_SERIES)
    p->counts[p->n_counts++] = (count){name, status, 0};
  if (i < p->n_counts)
    p->counts[i].n++;
  size_t h = 0;
  while (h < p->n_histos && p->histos[h].route != name)
    h++;
  if (h == p->n_histos && h < MAX_SERIES)
    p->histos[p->n_histos++] = (histo){.route = name};
  if (h < p->n_histos) {
    histo *x = &p->histos[h];
    size_t b = 0;
    while (b < N_BOUNDS && seconds > bounds[b])
      b++;
    x->bucket[b]++;
    x->n++;
    x->sum += seconds;
  }
  pthread_mutex_unlock(&p->mu);
}

/* A label value, escaped as the exposition format wants. */
static void label(FILE *f, const char *v) {
  for (; v && *v; v++) {
    if (*v == '\\' || *v == '"')
      fputc('\\', f);
    if (*v == '\n')
      fputs("\\n", f);
    else
      fputc(*v, f);
  }
}

void prom_write(prom *p, FILE *f) {
  pthread_mutex_lock(&p->mu);
  fputs("# HELP embstore_http_requests_total Requests answered, by route and "
        "status.\n# TYPE embstore_http_requests_total counter\n", f);
  for (size_t i = 0; i < p->n_counts; i++)
    fprintf(f, "embstore_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
            p->counts[i].route, p->counts[i].status,
            (unsigned long long)p->counts[i].n);
  fputs("# HELP embstore_http_request_duration_seconds Time to answer, by "
        "route.\n# TYPE embstore_http_request_duration_seconds histogram\n", f);
  for (size_t h = 0; h < p->n_histos; h++) {
    const histo *x = &p->histos[h];
    uint64_t cum = 0;
    for (size_t b = 0; b <= N_BOUNDS; b++) {
      cum += x->bucket[b];
      if (b < N_BOUNDS)
        fprintf(f, "embstore_http_request_duration_seconds_bucket{route=\"%s\","
                "le=\"%g\"} %llu\n", x->route, bounds[b], (unsigned long long)cum);
      else
        fprintf(f, "embstore_http_request_duration_seconds_bucket{route=\"%s\","
                "le=\"+Inf\"} %llu\n", x->route, (unsigned long long)cum);
    }
    fprintf(f, "embstore_http_request_duration_seconds_sum{route=\"%s\"} %.9g\n",
            x->route, x->sum);
    fprintf(f, "embstore_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
            x->route, (unsigned long long)x->n);
  }
  pthread_mutex_unlock(&p->mu);
}

/* The library's figures: operations of the last hour, the pool, the
 * cache, the store's size. */
static void library_figures(request *rq, FILE *f) {
  es_store *s = rq->sv->store;
  es_metrics_report *r = NULL;
  if (es_metrics_report_get(s, 3600, &r) == ES_OK) {
    fputs("# HELP embstore_operation_duration_milliseconds Library operations "
          "of the last hour: percentiles.\n"
          "# TYPE embstore_operation_duration_milliseconds summary\n", f);
    for (size_t i = 0; i < r->n; i++) {
      const es_op_metrics *m = &r->ops[i];
      static const char *const q[3] = {"0.5", "0.95", "0.99"};
      double v[3] = {m->p50_ms, m->p95_ms, m->p99_ms};
      for (int k = 0; k < 3; k++) {
        fputs("embstore_operation_duration_milliseconds{operation=\"", f);
        label(f, m->operation);
        fprintf(f, "\",quantile=\"%s\"} %.9g\n", q[k], isnan(v[k]) ? 0 : v[k]);
      }
      fputs("embstore_operation_duration_milliseconds_count{operation=\"", f);
      label(f, m->operation);
      fprintf(f, "\"} %lld\n", (long long)m->count);
    }
    fputs("# HELP embstore_operation_error_ratio Failed share of the last "
          "hour's operations.\n# TYPE embstore_operation_error_ratio gauge\n", f);
    for (size_t i = 0; i < r->n; i++) {
      fputs("embstore_operation_error_ratio{operation=\"", f);
      label(f, r->ops[i].operation);
      fprintf(f, "\"} %.9g\n", r->ops[i].error_rate);
    }
  }
  es_metrics_report_free(r);
  es_runtime rt;
  es_runtime_get(s, &rt);
  fprintf(f, "# HELP embstore_pool_connections Database connections of the "
          "server's pool.\n# TYPE embstore_pool_connections gauge\n"
          "embstore_pool_connections{state=\"in_use\"} %d\n"
          "embstore_pool_connections{state=\"idle\"} %d\n"
          "# HELP embstore_pool_size The pool's bound.\n"
          "# TYPE embstore_pool_size gauge\nembstore_pool_size %d\n"
          "# HELP embstore_cache_hits_total Searches answered from the cache.\n"
          "# TYPE embstore_cache_hits_total counter\nembstore_cache_hits_total %lld\n"
          "# HELP embstore_cache_misses_total Searches the cache could not answer.\n"
          "# TYPE embstore_cache_misses_total counter\nembstore_cache_misses_total %lld\n"
          "# HELP embstore_cache_bytes Bytes of results the cache holds.\n"
          "# TYPE embstore_cache_bytes gauge\nembstore_cache_bytes %lld\n"
          "# HELP embstore_cache_entries Results the cache holds.\n"
          "# TYPE embstore_cache_entries gauge\nembstore_cache_entries %lld\n"
          "# HELP embstore_cache_invalidations_total Notifications of other "
          "processes' writes received.\n"
          "# TYPE embstore_cache_invalidations_total counter\n"
          "embstore_cache_invalidations_total %lld\n"
          "# HELP embstore_cache_listener_reconnects_total Times the listening "
          "connection was lost and made again.\n"
          "# TYPE embstore_cache_listener_reconnects_total counter\n"
          "embstore_cache_listener_reconnects_total %lld\n"
          "# HELP embstore_cache_listening 1 while the cache hears every "
          "process's writes.\n"
          "# TYPE embstore_cache_listening gauge\nembstore_cache_listening %d\n",
          rt.pool_in_use, rt.pool_idle, rt.pool_size, (long long)rt.cache_hits,
          (long long)rt.cache_misses, (long long)rt.cache_bytes,
          (long long)rt.cache_entries, (long long)rt.cache_invalidations,
          (long long)rt.cache_listener_reconnects, rt.cache_listening);
  if (rt.replica)
    fprintf(f, "# HELP embstore_replica_reads_total Reads the read replica "
            "answered.\n# TYPE embstore_replica_reads_total counter\n"
            "embstore_replica_reads_total %lld\n"
            "# HELP embstore_replica_fallbacks_total Reads the primary "
            "answered because the replica was behind, lagging or down.\n"
            "# TYPE embstore_replica_fallbacks_total counter\n"
            "embstore_replica_fallbacks_total %lld\n"
            "# HELP embstore_replica_lag_ms The replica's lag when last asked "
            "(-1: not known).\n# TYPE embstore_replica_lag_ms gauge\n"
            "embstore_replica_lag_ms %lld\n"
            "# HELP embstore_replica_up 0 while the last read found the "
            "replica down.\n# TYPE embstore_replica_up gauge\n"
            "embstore_replica_up %d\n",
            (long long)rt.replica_reads, (long long)rt.replica_fallbacks,
            (long long)rt.replica_lag_ms, rt.replica_state != ES_REPLICA_DOWN);
  es_stats *st = NULL;
  if (es_stats_get(s, NULL, &st) == ES_OK)
    fprintf(f, "# HELP embstore_documents Documents stored.\n"
            "# TYPE embstore_documents gauge\nembstore_documents %lld\n"
            "# HELP embstore_chunks Chunks stored.\n"
            "# TYPE embstore_chunks gauge\nembstore_chunks %lld\n",
            (long long)st->documents, (long long)st->chunks);
  es_stats_free(st);
}

void h_metrics_prom(request *rq) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (f == NULL) {
    reply_error(rq, 500, "ES_ENOMEM", "out of memory");
    return;
  }
  prom_write(rq->sv->metrics, f);
  library_figures(rq, f);
  if (fclose(f) != 0) {
    free(buf);
    reply_error(rq, 500, "ES_ENOMEM", "out of memory");
    return;
  }
  reply_raw(rq, 200, "text/plain; version=0.0.4; charset=utf-8", buf, len);
  free(buf);
}
