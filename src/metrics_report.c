/* metrics_report.c - es_metrics_report_get: the recorded metrics read
 * back per operation (count, percentiles, error rate).  An operation like
 * any other (es__run), apart from metrics.c, which records and writes
 * them: the writer does not depend on the operations it measures. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Frees a report of es_metrics_report_get (NULL: nothing). */
void es_metrics_report_free(es_metrics_report *r) {
  if (r == NULL)
    return;
  for (size_t i = 0; i < r->n; i++)
    free(r->ops[i].operation);
  free(r->ops);
  free(r);
}

typedef struct report_ctx {
  int64_t since_s;
  es_metrics_report *r;
} report_ctx;

/* Reads count, percentiles and error rate per operation. */
static es_status report_op(es_store *s, es__conn *c, void *arg) {
  report_ctx *x = arg;
  char since[32];
  snprintf(since, sizeof since, "%lld", (long long)x->since_s);
  const char *v[1] = {since};
  PGresult *r = PQexecParams(
      c->pg,
      "SELECT operation, count(*), "
      "percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms), "
      "percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms), "
      "percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms), "
      "avg((NOT success)::int) FROM performance_metrics "
      "WHERE $1::bigint = 0 OR created_at >= now() - make_interval(secs => $1::bigint) "
      "GROUP BY operation ORDER BY operation",
      1, NULL, v, NULL, NULL, 0);
  if (!es__res_ok(r)) {
    es_status rc = es__fail_pg(s, c->pg, r, "cannot read performance_metrics");
    PQclear(r);
    return rc;
  }
  int n = PQntuples(r);
  x->r->ops = calloc(n > 0 ? (size_t)n : 1, sizeof *x->r->ops);
  if (x->r->ops == NULL) {
    PQclear(r);
    return es__fail(s, ES_ENOMEM, "out of memory");
  }
  for (int i = 0; i < n; i++) {
    es_op_metrics *m = &x->r->ops[x->r->n];
    if ((m->operation = strdup(PQgetvalue(r, i, 0))) == NULL) {
      PQclear(r); /* a report without this operation would be wrong */
      return es__fail(s, ES_ENOMEM, "out of memory");
    }
    x->r->n++;
    m->count = strtoll(PQgetvalue(r, i, 1), NULL, 10);
    m->p50_ms = es__strtod(PQgetvalue(r, i, 2), NULL);
    m->p95_ms = es__strtod(PQgetvalue(r, i, 3), NULL);
    m->p99_ms = es__strtod(PQgetvalue(r, i, 4), NULL);
    m->error_rate = es__strtod(PQgetvalue(r, i, 5), NULL);
  }
  PQclear(r);
  return ES_OK;
}

/* The metrics of the last since_s seconds (0: all), this process's
 * buffered records included. */
es_status es_metrics_report_get(es_store *s, int64_t since_s,
                                es_metrics_report **out) {
  if (out)
    *out = NULL; /* also when s is NULL: a failed call hands out nothing */
  if (s == NULL || out == NULL)
    return ES_EINVAL;
  es__clear_err(s);
  if (since_s < 0)
    return es__fail(s, ES_EINVAL, "the period must not be negative");
  es__metrics_flush_now(s);
  report_ctx x = {since_s, calloc(1, sizeof *x.r)};
  if (x.r == NULL)
    return es__fail(s, ES_ENOMEM, "out of memory");
  es_status rc = es__run(s, NULL, true, report_op, &x);
  if (rc != ES_OK) {
    es_metrics_report_free(x.r);
    return rc;
  }
  *out = x.r;
  return ES_OK;
}
