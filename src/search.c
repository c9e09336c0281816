/* search.c - k nearest neighbours, by vector or by a stored document.
 *
 * The statement text is assembled from fixed fragments (metric operator,
 * which filters are present) and prepared once per connection and variant;
 * every value is a parameter.  With filters, pgvector 0.8's iterative index
 * scan keeps walking the HNSW graph until k rows pass the filter; if it
 * still finds fewer than k (its scan budget ran out on a rare filter), an
 * exact scan over the filtered rows, which the btree indexes make cheap
 * exactly when matches are rare, guarantees k whenever k rows match. */
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "internal.h"
#include "json.h"

#define MAX_K 1000

enum { F_WORKSPACE = 1, F_SOURCE = 2, F_EXCLUDE = 4, F_EXACT = 8, F_FILTER = 16 };
#define N_VARIANTS 32

static const char *const operators[] = {"<=>", "<->", "<#>"};

/* Builds the statement for metric and flags into buf. */
static void build_sql(char *buf, size_t cap, es_metric metric, int flags) {
  assert((unsigned)metric < sizeof operators / sizeof operators[0]);
  assert(flags >= 0 && flags < N_VARIANTS);
  const char *op = operators[metric];
  int n = 2; /* $1 is the query vector */
  char where[256] = "";
  size_t w = 0;
  if (flags & F_WORKSPACE)
    w += (size_t)snprintf(where + w, sizeof where - w,
                          " AND metadata->>'workspace' = $%d", n++);
  if (flags & F_SOURCE)
    w += (size_t)snprintf(where + w, sizeof where - w, " AND source_id = $%d", n++);
  if (flags & F_EXCLUDE)
    w += (size_t)snprintf(where + w, sizeof where - w, " AND id <> $%d", n++);
  if (flags & F_FILTER)
    w += (size_t)snprintf(where + w, sizeof where - w,
                          " AND metadata @> $%d::jsonb", n++);
  /* "+ 0" hides the ordering from the index: an exact scan. */
  snprintf(buf, cap,
           "SELECT id, distance, text, source_id, metadata::text FROM ("
           "SELECT id, embedding %s $1::vector AS distance, text, source_id, "
           "metadata FROM embeddings WHERE embedding IS NOT NULL%s "
           "ORDER BY (embedding %s $1::vector)%s LIMIT $%d) r "
           "ORDER BY distance, id",
           op, where, op, (flags & F_EXACT) ? " + 0" : "", n);
}

typedef struct search_ctx {
  const es_search_params *p;
  const float *vector;
  float *owned; /* the like_id document's vector */
  es_results *res;
} search_ctx;

/* Reads the vector of the document like_id. */
static es_status load_like(es_store *s, es__conn *c, search_ctx *sc, int dim) {
  const char *params[1] = {sc->p->like_id};
  PGresult *r = es__exec_stmt(c, ES__Q_GET_VECTOR, 1, params, NULL, NULL, 1);
  es_status rc = ES_OK;
  if (!es__res_ok(r))
    rc = es__fail_pg(s, c->pg, r, "cannot read the document to search near");
  else if (PQntuples(r) == 0)
    rc = es__fail(s, ES_ENOTFOUND, "no document with id \"%s\"", sc->p->like_id);
  else if (PQgetisnull(r, 0, 0))
    rc = es__fail(s, ES_EINVAL, "document \"%s\" has no vector to search near",
                  sc->p->like_id);
  if (rc != ES_OK) {
    PQclear(r);
    return rc;
  }
  free(sc->owned);
  sc->owned = malloc((size_t)dim * sizeof(float));
  if (sc->owned == NULL) {
    PQclear(r);
    return es__fail(s, ES_ENOMEM, "out of memory");
  }
  long got = es__vector_from_bin(PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0),
                                 sc->owned, (size_t)dim);
  PQclear(r);
  if (got != dim)
    return es__fail(s, ES_EDB, "document \"%s\" holds a malformed vector",
                    sc->p->like_id);
  sc->vector = sc->owned;
  return ES_OK;
}

/* Copies the rows of r into res. */
static es_status take_rows(es_store *s, PGresult *r, es_results *res) {
  int n = PQntuples(r);
  es__results_clear(res);
  res->hits = calloc(n > 0 ? (size_t)n : 1, sizeof *res->hits);
  if (res->hits == NULL)
    return es__fail(s, ES_ENOMEM, "out of memory");
  for (int i = 0; i < n; i++) {
    es_hit *h = &res->hits[i];
    res->n++;
    h->id = strdup(PQgetvalue(r, i, 0));
    h->distance = es__strtod(PQgetvalue(r, i, 1), NULL);
    h->text = strdup(PQgetvalue(r, i, 2));
    h->source_id = PQgetisnull(r, i, 3) ? NULL : strdup(PQgetvalue(r, i, 3));
    h->metadata_json = strdup(PQgetisnull(r, i, 4) ? "{}" : PQgetvalue(r, i, 4));
    if (!h->id || !h->text || !h->metadata_json ||
        (!PQgetisnull(r, i, 3) && !h->source_id))
      return es__fail(s, ES_ENOMEM, "out of memory");
  }
  return ES_OK;
}

/* Runs one variant of the search. */
static es_status run_variant(es_store *s, es__conn *c, search_ctx *sc,
                             es_metric metric, int dim, int flags) {
  char sql[1024], name[32], limit[16];
  const es_search_params *p = sc->p;
  int slot = ES__Q__COUNT + (int)metric * N_VARIANTS + flags;
  assert(slot < ES__STMT_SLOTS);
  build_sql(sql, sizeof sql, metric, flags);
  snprintf(name, sizeof name, "es_search_%d", slot);
  snprintf(limit, sizeof limit, "%d", p->k);

  size_t vlen = es__vector_bin_size((size_t)dim);
  char *vec = malloc(vlen);
  if (vec == NULL)
    return es__fail(s, ES_ENOMEM, "out of memory");
  es__vector_to_bin(sc->vector, (size_t)dim, vec);
  const char *v[6];
  int len[6] = {(int)vlen, 0, 0, 0, 0, 0}, fmt[6] = {1, 0, 0, 0, 0, 0}, n = 0;
  v[n++] = vec;
  if (flags & F_WORKSPACE)
    v[n++] = p->workspace;
  if (flags & F_SOURCE)
    v[n++] = p->source_id;
  if (flags & F_EXCLUDE)
    v[n++] = p->like_id;
  if (flags & F_FILTER)
    v[n++] = p->filter_json;
  v[n++] = limit;
  PGresult *r = es__exec_named(c, slot, name, sql, n, v, len, fmt, 0);
  free(vec);
  es_status rc;
  if (!es__res_ok(r))
    rc = es__fail_pg(s, c->pg, r, "search failed");
  else
    rc = take_rows(s, r, sc->res);
  PQclear(r);
  return rc;
}

/* The search on a pooled connection: the query vector checked (or read
 * from the like document), then the index scan, and an exact scan when a
 * filtered scan found fewer than k rows. */
static es_status search_op(es_store *s, es__conn *c, void *arg) {
  search_ctx *sc = arg;
  const es_search_params *p = sc->p;
  es_status rc = es__load_shape(s, c);
  if (rc != ES_OK)
    return rc;
  int dim = s->dim;
  es_metric metric = s->metric;
  if (p->vector) {
    if ((long)p->dim != dim)
      return es__fail(s, ES_EDIM, "the query vector has %zu values; the "
                      "store's dimension is %d", p->dim, dim);
    long bad = es__vector_first_nonfinite(p->vector, p->dim);
    if (bad >= 0)
      return es__fail(s, ES_EINVAL, "query vector[%ld] is not a finite number",
                      bad);
    if (metric == ES_METRIC_COSINE && es__vector_zero_norm(p->vector, p->dim))
      return es__fail(s, ES_EINVAL, "the query vector has zero length: the "
                      "cosine distance is undefined for it");
    sc->vector = p->vector;
  } else if ((rc = load_like(s, c, sc, dim)) != ES_OK) {
    return rc;
  } else if (metric == ES_METRIC_COSINE &&
             es__vector_zero_norm(sc->vector, (size_t)dim)) {
    return es__fail(s, ES_EINVAL, "document \"%s\" has a vector of zero "
                    "length: the cosine distance to it is undefined",
                    p->like_id);
  }
  int flags = (p->workspace ? F_WORKSPACE : 0) | (p->source_id ? F_SOURCE : 0) |
              (p->like_id ? F_EXCLUDE : 0) | (p->exact ? F_EXACT : 0) |
              (p->filter_json ? F_FILTER : 0);
  rc = run_variant(s, c, sc, metric, dim, flags);
  if (rc == ES_OK && !p->exact && (p->workspace || p->source_id || p->filter_json) &&
      sc->res->n < (size_t)p->k)
    rc = run_variant(s, c, sc, metric, dim, flags | F_EXACT);
  return rc;
}

void es_search_params_init(es_search_params *params) {
  memset(params, 0, sizeof *params);
  params->k = 10;
}

/* Checks search parameters at the door. */
static inline es_status check_params(es_store *s, const es_search_params *p) {
  if (p == NULL)
    return es__fail(s, ES_EINVAL, "search parameters are NULL");
  if ((p->vector == NULL) == (p->like_id == NULL))
    return es__fail(s, ES_EINVAL, "give exactly one of a query vector and a "
                    "document id (like)");
  if (p->k < 1 || p->k > MAX_K)
    return es__fail(s, ES_EINVAL, "k must be 1..%d, not %d", MAX_K, p->k);
  return es__check_filter(s, p->filter_json);
}

/* The cache key: everything that decides the answer. */
static bool cache_key(const es_search_params *p, es__buf *key) {
  char head[32];
  int n = snprintf(head, sizeof head, "%c%d/%d/", p->vector ? 'v' : 'l', p->k,
                   p->exact);
  bool ok = es__buf_append(key, head, (size_t)n);
  const char *parts[4] = {p->workspace, p->source_id, p->like_id,
                          p->filter_json};
  for (int i = 0; ok && i < 4; i++) {
    /* length-prefixed, NULL distinct from "" */
    n = snprintf(head, sizeof head, "%ld:", parts[i] ? (long)strlen(parts[i]) : -1L);
    ok = es__buf_append(key, head, (size_t)n) &&
         (!parts[i] || es__buf_append(key, parts[i], strlen(parts[i])));
  }
  if (ok && p->vector)
    ok = es__buf_append(key, (const char *)p->vector, p->dim * sizeof(float));
  return ok;
}

/* Records one search in the metrics, with whether the cache answered. */
static void record(es_store *s, double t0, es_status rc, const char *cache) {
  char meta[48];
  snprintf(meta, sizeof meta, "{\"cache\": \"%s\"}", cache);
  es__metric(s, "search", es__elapsed_ms(t0), rc == ES_OK,
             rc == ES_OK ? NULL : es_errmsg(s), meta);
}

/* Answers from the cache when it can, else runs the search (and caches
 * its answer); every search is recorded in the metrics. */
es_status es_search(es_store *s, const es_search_params *p, es_results **out) {
  if (s == NULL || out == NULL)
    return ES_EINVAL;
  *out = NULL;
  es__clear_err(s);
  double t0 = es__clock_ms();
  es_status rc = check_params(s, p);
  if (rc != ES_OK)
    return rc;

  /* A search near a stored document depends on that document, whatever
   * its source: only plain source-filtered searches depend on one source. */
  const char *depends_on = p->like_id ? NULL : p->source_id;
  es__buf key = {0};
  bool cached = s->cache != NULL && cache_key(p, &key);
  es__cache_ticket ticket;
  if (cached) {
    es_results *hit = es__cache_get(s->cache, key.data, key.len);
    if (hit) {
      es__buf_free(&key);
      record(s, t0, ES_OK, "hit");
      *out = hit;
      return ES_OK;
    }
    es__cache_take_ticket(s->cache, depends_on, &ticket); /* before the query */
  }
  search_ctx sc = {.p = p};
  sc.res = calloc(1, sizeof *sc.res);
  if (sc.res == NULL) {
    es__buf_free(&key);
    return es__fail(s, ES_ENOMEM, "out of memory");
  }
  rc = es__run(s, NULL, true, search_op, &sc);
  free(sc.owned);
  if (rc == ES_OK && cached)
    es__cache_put(s->cache, key.data, key.len, depends_on, &ticket, sc.res);
  es__buf_free(&key);
  record(s, t0, rc, cached ? "miss" : "off");
  if (rc != ES_OK) {
    es_results_free(sc.res);
    return rc;
  }
  *out = sc.res;
  return ES_OK;
}
