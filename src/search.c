/* search.c - k nearest neighbours, by vector or by a stored document; the
 * best text matches; or both fused (hybrid).
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
#include "listen.h"
#include "internal.h"
#include "json.h"
#include "schema.h"

#define MAX_K 1000

enum { F_WORKSPACE = 1, F_SOURCE = 2, F_EXCLUDE = 4, F_EXACT = 8, F_FILTER = 16 };
#define N_VARIANTS 32
/* The kinds of statement: es_search_mode's, less AUTO. */
enum { K_VECTOR = 0, K_TEXT = 1, K_HYBRID = 2, K_CHUNKS = 3, K_CHUNKS_TEXT = 4,
       K_CHUNKS_HYBRID = 5, N_KINDS = 6 };
#define DEFAULT_RRF_K 60
#define EXACT_BELOW 4000 /* filtered searches of fewer rows are exact */

static const char *const operators[] = {"<=>", "<->", "<#>"};

/* The filters of flags as " AND ..." on the document columns (named
 * with prefix t, "" or "e."), with parameters from $*n on. */
static void where_clause(char *where, size_t cap, int flags, int *n,
                         const char *t) {
  size_t w = 0;
  where[0] = '\0';
  if (flags & F_WORKSPACE)
    w += (size_t)snprintf(where + w, cap - w,
                          " AND %smetadata->>'workspace' = $%d", t, (*n)++);
  if (flags & F_SOURCE)
    w += (size_t)snprintf(where + w, cap - w, " AND %ssource_id = $%d", t, (*n)++);
  if (flags & F_EXCLUDE)
    w += (size_t)snprintf(where + w, cap - w, " AND %sid <> $%d", t, (*n)++);
  if (flags & F_FILTER)
    w += (size_t)snprintf(where + w, cap - w, " AND %smetadata @> $%d::jsonb",
                          t, (*n)++);
}

/* Builds the statement of kind for metric and flags into buf; text_oid
 * is the store's text search configuration (text.c: a number from the
 * catalog, written as the constant the text index is built on).
 *
 *   vector  $1 vector, filters, limit
 *   text    $1 query, filters, limit
 *   hybrid  $1 vector, $2 query, filters, pool, rrf_k, w_v, w_t, limit
 *
 * Text and hybrid statements answer 8 columns: the vector one's 5, then
 * score, vector rank, text rank.  Chunk statements add document_id and
 * chunk_index: 7 columns (vector), 10 (text, hybrid). */
static void build_sql(char *buf, size_t cap, int kind, es_metric metric,
                      int flags, unsigned text_oid) {
  assert((unsigned)metric < sizeof operators / sizeof operators[0]);
  assert(flags >= 0 && flags < N_VARIANTS && kind >= 0 && kind < N_KINDS);
  const char *op = operators[metric];
  bool hybrid = kind == K_HYBRID || kind == K_CHUNKS_HYBRID;
  int n = hybrid ? 3 : 2;
  char where[256];
  where_clause(where, sizeof where, flags, &n, kind >= K_CHUNKS ? "e." : "");
  /* "+ 0" hides the ordering from the index: an exact scan. */
  const char *exact = (flags & F_EXACT) ? " + 0" : "";
  char tsv[96], tsq[80];
  snprintf(tsv, sizeof tsv, "to_tsvector('%u'::regconfig, left(%stext, "
           ES__TEXT_CHARS_S "))", text_oid, kind >= K_CHUNKS ? "c." : "");
  snprintf(tsq, sizeof tsq, "websearch_to_tsquery('%u'::regconfig, $%d)", text_oid,
           hybrid ? 2 : 1);
  if (kind == K_CHUNKS_TEXT) {
    snprintf(buf, cap,
             "SELECT id, NULL::float8, text, source_id, metadata::text, score, "
             "0, (row_number() OVER (ORDER BY score DESC, id))::int4, "
             "document_id, chunk_index FROM (SELECT c.id, ts_rank_cd(%s, q) "
             "AS score, c.text, e.source_id, e.metadata, c.document_id, "
             "c.chunk_index FROM chunks c JOIN embeddings e ON e.id = "
             "c.document_id, %s q WHERE %s @@ q%s ORDER BY score DESC, c.id "
             "LIMIT $%d) r ORDER BY score DESC, id",
             tsv, tsq, tsv, where, n);
  } else if (kind == K_CHUNKS_HYBRID) {
    snprintf(buf, cap,
             "WITH v AS (SELECT id, distance, row_number() OVER (ORDER BY "
             "distance, id) AS rank FROM (SELECT c.id, c.embedding %s "
             "$1::vector AS distance FROM chunks c JOIN embeddings e ON e.id = "
             "c.document_id WHERE c.embedding IS NOT NULL%s ORDER BY "
             "(c.embedding %s $1::vector)%s LIMIT $%d) x), "
             "t AS (SELECT id, row_number() OVER (ORDER BY score DESC, id) AS "
             "rank FROM (SELECT c.id, ts_rank_cd(%s, q) AS score FROM chunks c "
             "JOIN embeddings e ON e.id = c.document_id, %s q WHERE %s @@ q%s "
             "ORDER BY score DESC, c.id LIMIT $%d) y), "
             "f AS (SELECT coalesce(v.id, t.id) AS id, v.distance, v.rank AS "
             "vrank, t.rank AS trank, coalesce($%d::float8 / ($%d::float8 + "
             "v.rank), 0) + coalesce($%d::float8 / ($%d::float8 + t.rank), 0) "
             "AS score FROM v FULL JOIN t ON v.id = t.id) "
             "SELECT c.id, f.distance, c.text, e.source_id, e.metadata::text, "
             "f.score, coalesce(f.vrank, 0)::int4, coalesce(f.trank, 0)::int4, "
             "c.document_id, c.chunk_index FROM f JOIN chunks c ON c.id = f.id "
             "JOIN embeddings e ON e.id = c.document_id "
             "ORDER BY f.score DESC, f.id COLLATE \"C\" LIMIT $%d",
             op, where, op, exact, n, tsv, tsq, tsv, where, n, n + 2, n + 1,
             n + 3, n + 1, n + 4);
  } else if (kind == K_CHUNKS) {
    /* Filters apply through the document; the chunk index (partial, on
     * the chunks that have a vector) orders the scan. */
    snprintf(buf, cap,
             "SELECT id, distance, text, source_id, metadata::text, "
             "document_id, chunk_index FROM (SELECT c.id, c.embedding %s "
             "$1::vector AS distance, c.text, e.source_id, e.metadata, "
             "c.document_id, c.chunk_index FROM chunks c JOIN embeddings e ON "
             "e.id = c.document_id WHERE c.embedding IS NOT NULL%s "
             "ORDER BY (c.embedding %s $1::vector)%s LIMIT $%d) r "
             "ORDER BY distance, id",
             op, where, op, exact, n);
  } else if (kind == K_VECTOR) {
    snprintf(buf, cap,
             "SELECT id, distance, text, source_id, metadata::text FROM ("
             "SELECT id, embedding %s $1::vector AS distance, text, source_id, "
             "metadata FROM embeddings WHERE embedding IS NOT NULL%s "
             "ORDER BY (embedding %s $1::vector)%s LIMIT $%d) r "
             "ORDER BY distance, id",
             op, where, op, exact, n);
  } else if (kind == K_TEXT) {
    snprintf(buf, cap,
             "SELECT id, NULL::float8, text, source_id, metadata::text, score, "
             "0, (row_number() OVER (ORDER BY score DESC, id))::int4 FROM ("
             "SELECT id, ts_rank_cd(%s, q) AS score, text, source_id, "
             "metadata FROM embeddings, %s q WHERE %s @@ q%s "
             "ORDER BY score DESC, id LIMIT $%d) r ORDER BY score DESC, id",
             tsv, tsq, tsv, where, n);
  } else {
    snprintf(buf, cap,
             "WITH v AS (SELECT id, distance, row_number() OVER (ORDER BY "
             "distance, id) AS rank FROM (SELECT id, embedding %s $1::vector "
             "AS distance FROM embeddings WHERE embedding IS NOT NULL%s "
             "ORDER BY (embedding %s $1::vector)%s LIMIT $%d) x), "
             "t AS (SELECT id, row_number() OVER (ORDER BY score DESC, id) AS "
             "rank FROM (SELECT id, ts_rank_cd(%s, q) AS score FROM embeddings, "
             "%s q WHERE %s @@ q%s ORDER BY score DESC, id LIMIT $%d) y), "
             "f AS (SELECT coalesce(v.id, t.id) AS id, v.distance, v.rank AS "
             "vrank, t.rank AS trank, coalesce($%d::float8 / ($%d::float8 + "
             "v.rank), 0) + coalesce($%d::float8 / ($%d::float8 + t.rank), 0) "
             "AS score FROM v FULL JOIN t ON v.id = t.id) "
             "SELECT e.id, f.distance, e.text, e.source_id, e.metadata::text, "
             "f.score, coalesce(f.vrank, 0)::int4, coalesce(f.trank, 0)::int4 "
             "FROM f JOIN embeddings e ON e.id = f.id "
             "ORDER BY f.score DESC, f.id COLLATE \"C\" LIMIT $%d",
             op, where, op, exact, n, tsv, tsq, tsv, where, n, n + 2, n + 1,
             n + 3, n + 1, n + 4);
  }
}

typedef struct search_ctx {
  const es_search_params *p;
  es_search_mode mode; /* resolved: never AUTO */
  unsigned text_oid;   /* the store's text search configuration */
  int rrf_k;
  double w_vector, w_text;
  const float *vector;
  float *owned; /* the like_id document's vector */
  es_results *res;
  bool embed;   /* the text is embedded by the store's provider */
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

/* Copies the rows of r into res (a vector search's 5 columns, a chunk
 * search's 7, or 8). */
static es_status take_rows(es_store *s, PGresult *r, es_results *res) {
  int n = PQntuples(r);
  int nf = PQnfields(r);
  bool ranked = nf == 8 || nf == 10, chunks = nf == 7 || nf == 10;
  int chunk_col = nf == 10 ? 8 : 5; /* document_id, then chunk_index */
  es__results_clear(res);
  res->hits = calloc(n > 0 ? (size_t)n : 1, sizeof *res->hits);
  if (res->hits == NULL)
    return es__fail(s, ES_ENOMEM, "out of memory");
  for (int i = 0; i < n; i++) {
    es_hit *h = &res->hits[i];
    res->n++;
    h->id = strdup(PQgetvalue(r, i, 0));
    h->distance = PQgetisnull(r, i, 1) ? NAN : es__strtod(PQgetvalue(r, i, 1), NULL);
    h->score = ranked ? es__strtod(PQgetvalue(r, i, 5), NULL) : 0;
    h->vector_rank = ranked ? atoi(PQgetvalue(r, i, 6)) : i + 1;
    h->text_rank = ranked ? atoi(PQgetvalue(r, i, 7)) : 0;
    h->chunk_index = chunks ? atoi(PQgetvalue(r, i, chunk_col + 1)) : -1;
    if (chunks && (h->document_id = strdup(PQgetvalue(r, i, chunk_col))) == NULL)
      return es__fail(s, ES_ENOMEM, "out of memory");
    h->text = strdup(PQgetvalue(r, i, 2));
    h->source_id = PQgetisnull(r, i, 3) ? NULL : strdup(PQgetvalue(r, i, 3));
    h->metadata_json = strdup(PQgetisnull(r, i, 4) ? "{}" : PQgetvalue(r, i, 4));
    if (!h->id || !h->text || !h->metadata_json ||
        (!PQgetisnull(r, i, 3) && !h->source_id))
      return es__fail(s, ES_ENOMEM, "out of memory");
  }
  return ES_OK;
}

/* The pool each side of a hybrid search fuses: deep enough that a hit
 * ranked low on one side can still rise on the other (4k), and at least
 * hnsw.ef_search's default of 40, which one HNSW scan yields without an
 * iterative rescan: a pool of 100 cost 10x a vector search of k = 10
 * (bench/run search), one of 40 about 1.6x. */
static int pool_of(int k) {
  int pool = 4 * k > 40 ? 4 * k : 40;
  return pool < 2000 ? pool : 2000;
}

/* One statement of a search, ready to send: its text, prepared-statement
 * slot and parameters. */
typedef struct variant {
  int slot;
  char sql[2048], name[32], limit[16], pool[16], rrf[16], wv[32], wt[32];
  const char *v[12];
  int len[12], fmt[12], n;
  char *vec; /* the query vector in binary, owned */
} variant;

/* The statement of kind for the search sc, with limit rows (the hybrid
 * statement's own pools are pool_of(k) deep). */
static es_status make_variant(es_store *s, search_ctx *sc, es_metric metric,
                              int dim, int flags, int kind, int limit,
                              variant *x) {
  const es_search_params *p = sc->p;
  memset(x, 0, sizeof *x);
  x->slot = ES__Q__COUNT + (kind * 3 + (int)metric) * N_VARIANTS + flags;
  assert(x->slot < ES__STMT_SLOTS);
  build_sql(x->sql, sizeof x->sql, kind, metric, flags, sc->text_oid);
  snprintf(x->name, sizeof x->name, "es_search_%d", x->slot);
  snprintf(x->limit, sizeof x->limit, "%d", limit);
  snprintf(x->pool, sizeof x->pool, "%d", pool_of(p->k));
  snprintf(x->rrf, sizeof x->rrf, "%d", sc->rrf_k);
  es__snprintf_c(x->wv, sizeof x->wv, "%.17g", sc->w_vector);
  es__snprintf_c(x->wt, sizeof x->wt, "%.17g", sc->w_text);
  bool text = kind == K_TEXT || kind == K_CHUNKS_TEXT;
  bool hybrid = kind == K_HYBRID || kind == K_CHUNKS_HYBRID;
  int n = 0;
  if (!text) {
    size_t vlen = es__vector_bin_size((size_t)dim);
    if ((x->vec = malloc(vlen)) == NULL)
      return es__fail(s, ES_ENOMEM, "out of memory");
    es__vector_to_bin(sc->vector, (size_t)dim, x->vec);
    x->len[n] = (int)vlen;
    x->fmt[n] = 1;
    x->v[n++] = x->vec;
  }
  if (text || hybrid)
    x->v[n++] = p->text;
  if (flags & F_WORKSPACE)
    x->v[n++] = p->workspace;
  if (flags & F_SOURCE)
    x->v[n++] = p->source_id;
  if (flags & F_EXCLUDE)
    x->v[n++] = p->like_id;
  if (flags & F_FILTER)
    x->v[n++] = p->filter_json;
  if (hybrid) {
    x->v[n++] = x->pool;
    x->v[n++] = x->rrf;
    x->v[n++] = x->wv;
    x->v[n++] = x->wt;
  }
  x->v[n++] = x->limit;
  x->n = n;
  return ES_OK;
}

/* The kind of statement that ranks sc's search, one pass. */
static int kind_of(const search_ctx *sc) {
  int kind = sc->mode == ES_SEARCH_TEXT     ? K_TEXT
             : sc->mode == ES_SEARCH_HYBRID ? K_HYBRID
                                            : K_VECTOR;
  return sc->p->chunks ? kind + K_CHUNKS : kind; /* K_CHUNKS, K_CHUNKS_TEXT, ... */
}

/* Runs one variant of the search: one statement. */
static es_status run_variant(es_store *s, es__conn *c, search_ctx *sc,
                             es_metric metric, int dim, int flags) {
  variant x;
  es_status rc = make_variant(s, sc, metric, dim, flags, kind_of(sc),
                              sc->p->k, &x);
  if (rc != ES_OK)
    return rc;
  PGresult *r = es__exec_named(c, x.slot, x.name, x.sql, x.n, x.v, x.len,
                               x.fmt, 0);
  free(x.vec);
  if (!es__res_ok(r))
    rc = es__fail_pg(s, c->pg, r, "search failed");
  else
    rc = take_rows(s, r, sc->res);
  PQclear(r);
  sc->res->mode = sc->mode;
  return rc;
}

/* ---- hybrid with its two pools at once ----------------------------------- */

/* A hit of either pool: its row in the vector pool's answer and in the
 * text pool's (-1: not in that pool). */
typedef struct candidate {
  const char *id;
  int vrow, trow;
  double score;
} candidate;

static int by_id(const void *a, const void *b) {
  return strcmp(((const candidate *)a)->id, ((const candidate *)b)->id);
}

/* Larger score first; ties by id, bytewise (as the C collation orders). */
static int by_score(const void *a, const void *b) {
  const candidate *x = a, *y = b;
  if (x->score != y->score)
    return x->score > y->score ? -1 : 1;
  return strcmp(x->id, y->id);
}

/* Fuses the vector pool's rows rv (5 columns, 7 for chunks, nearest first)
 * and the text pool's rt (8, 10 for chunks, best first) by Reciprocal Rank
 * Fusion into sc->res: the same hits, ranks and scores as the one-statement
 * hybrid (K_HYBRID), computed here. */
static es_status fuse(es_store *s, search_ctx *sc, const PGresult *rv,
                      const PGresult *rt) {
  int nv = PQntuples(rv), nt = PQntuples(rt);
  bool chunks = sc->p->chunks != 0;
  candidate *cand = malloc(((size_t)nv + (size_t)nt + 1) * sizeof *cand);
  es_results *res = sc->res;
  es__results_clear(res);
  res->mode = sc->mode;
  if (cand == NULL)
    return es__fail(s, ES_ENOMEM, "out of memory");
  for (int i = 0; i < nv; i++)
    cand[i] = (candidate){PQgetvalue(rv, i, 0), i, -1, 0};
  qsort(cand, (size_t)nv, sizeof *cand, by_id);
  size_t n = (size_t)nv;
  for (int j = 0; j < nt; j++) {
    candidate key = {PQgetvalue(rt, j, 0), -1, j, 0};
    candidate *hit = bsearch(&key, cand, (size_t)nv, sizeof *cand, by_id);
    if (hit)
      hit->trow = j;
    else
      cand[n++] = key;
  }
  for (size_t i = 0; i < n; i++) { /* as the statement computes it */
    candidate *x = &cand[i];
    x->score = (x->vrow >= 0 ? sc->w_vector / ((double)sc->rrf_k + (x->vrow + 1)) : 0) +
               (x->trow >= 0 ? sc->w_text / ((double)sc->rrf_k + (x->trow + 1)) : 0);
  }
  qsort(cand, n, sizeof *cand, by_score);
  size_t k = n < (size_t)sc->p->k ? n : (size_t)sc->p->k;
  res->hits = calloc(k ? k : 1, sizeof *res->hits);
  if (res->hits == NULL) {
    free(cand);
    return es__fail(s, ES_ENOMEM, "out of memory");
  }
  es_status rc = ES_OK;
  for (size_t i = 0; i < k && rc == ES_OK; i++) {
    const candidate *x = &cand[i];
    const PGresult *r = x->vrow >= 0 ? rv : rt;
    int row = x->vrow >= 0 ? x->vrow : x->trow, doc_col = x->vrow >= 0 ? 5 : 8;
    es_hit *h = &res->hits[res->n++];
    h->id = strdup(x->id);
    h->distance = x->vrow >= 0 ? es__strtod(PQgetvalue(rv, x->vrow, 1), NULL) : NAN;
    h->score = x->score;
    h->vector_rank = x->vrow + 1;
    h->text_rank = x->trow + 1;
    h->text = strdup(PQgetvalue(r, row, 2));
    h->source_id = PQgetisnull(r, row, 3) ? NULL : strdup(PQgetvalue(r, row, 3));
    h->metadata_json = strdup(PQgetisnull(r, row, 4) ? "{}" : PQgetvalue(r, row, 4));
    h->chunk_index = chunks ? atoi(PQgetvalue(r, row, doc_col + 1)) : -1;
    if (chunks)
      h->document_id = strdup(PQgetvalue(r, row, doc_col));
    if (!h->id || !h->text || !h->metadata_json ||
        (!PQgetisnull(r, row, 3) && !h->source_id) || (chunks && !h->document_id))
      rc = es__fail(s, ES_ENOMEM, "out of memory");
  }
  free(cand);
  return rc;
}

/* The answer of the statement sent on c, draining what follows it. */
static PGresult *take_answer(es__conn *c) {
  PGresult *r = PQgetResult(c->pg), *more;
  while ((more = PQgetResult(c->pg)) != NULL)
    PQclear(more);
  return r;
}

/* A hybrid search whose vector pool runs on c while its text pool runs on
 * c2, on two server processes at once: the pools cost about the slower of
 * the two instead of their sum (bench/run search). */
static es_status run_hybrid_split(es_store *s, es__conn *c, es__conn *c2,
                                  search_ctx *sc, es_metric metric, int dim,
                                  int flags) {
  int base = sc->p->chunks ? K_CHUNKS : 0, pool = pool_of(sc->p->k);
  variant xv, xt;
  es_status rc = make_variant(s, sc, metric, dim, flags, base + K_VECTOR, pool, &xv);
  if (rc != ES_OK)
    return rc;
  if ((rc = make_variant(s, sc, metric, dim, flags, base + K_TEXT, pool, &xt)) != ES_OK) {
    free(xv.vec);
    return rc;
  }
  PGresult *rv = NULL, *rt = NULL;
  bool sent_v = es__send_named(c, xv.slot, xv.name, xv.sql, xv.n, xv.v, xv.len,
                               xv.fmt, &rv);
  bool sent_t = sent_v && es__send_named(c2, xt.slot, xt.name, xt.sql, xt.n,
                                         xt.v, xt.len, xt.fmt, &rt);
  if (sent_v && rv == NULL)
    rv = take_answer(c);
  if (sent_t && rt == NULL)
    rt = take_answer(c2);
  free(xv.vec);
  free(xt.vec);
  if (!es__res_ok(rv))
    rc = es__fail_pg(s, c->pg, rv, "search failed");
  else if (!es__res_ok(rt))
    rc = es__fail_pg(s, c2->pg, rt, "search failed");
  else
    rc = fuse(s, sc, rv, rt);
  PQclear(rv);
  PQclear(rt);
  return rc;
}

/* Whether a second connection of a replica pool reaches the server that
 * c does (a multi-host string may spread them): only c was checked to be
 * fresh enough, and the server's replay only grows. */
static bool same_server(es_store *s, const es__conn *c, const es__conn *c2) {
  if (!es__replica_owns(s->replica, c))
    return true;
  const char *h1 = PQhost(c->pg), *h2 = PQhost(c2->pg);
  const char *p1 = PQport(c->pg), *p2 = PQport(c2->pg);
  return h1 && h2 && p1 && p2 && strcmp(h1, h2) == 0 && strcmp(p1, p2) == 0;
}

/* Runs the search with flags: a hybrid one on two connections when the
 * pool has a second one free at once, else in one statement. */
static es_status run_search(es_store *s, es__conn *c, search_ctx *sc,
                            es_metric metric, int dim, int flags) {
  es__conn *c2 = NULL;
  if (sc->mode != ES_SEARCH_HYBRID || es__acquire_now(s, c->pool, &c2) != ES_OK ||
      c2 == NULL || !same_server(s, c, c2)) {
    es__release(s, c2);
    es__clear_err(s);
    return run_variant(s, c, sc, metric, dim, flags);
  }
  es_status rc = run_hybrid_split(s, c, c2, sc, metric, dim, flags);
  es__release(s, c2);
  return rc;
}

/* The store's text search configuration, for the text and hybrid modes. */
static unsigned text_oid(es_store *s) {
  pthread_mutex_lock(&s->shape_mu);
  unsigned oid = s->text_oid;
  pthread_mutex_unlock(&s->shape_mu);
  return oid;
}

static es_status need_text(es_store *s, es__conn *c, unsigned *oid) {
  es_status rc = es__load_text(s, c, false);
  if (rc == ES_OK && text_oid(s) == 0) /* migrated since it was read? */
    rc = es__load_text(s, c, true);
  if (rc == ES_OK && (*oid = text_oid(s)) == 0)
    rc = es__fail(s, ES_EINVAL, "this store has no text search (it was "
                  "initialised with --no-text-search): search by vector");
  return rc;
}

/* After a text search found nothing: a query of stop words only (the
 * configuration drops "the", "a", ...) is an error, not "no results". */
static es_status check_words(es_store *s, es__conn *c, const search_ctx *sc) {
  char sql[96];
  snprintf(sql, sizeof sql, "SELECT numnode(websearch_to_tsquery('%u'::regconfig, "
           "$1))", sc->text_oid);
  const char *v[1] = {sc->p->text};
  PGresult *r = PQexecParams(c->pg, sql, 1, NULL, v, NULL, NULL, 0);
  es_status rc = ES_OK;
  if (!es__res_ok(r))
    rc = es__fail_pg(s, c->pg, r, "search failed");
  else if (atoi(PQgetvalue(r, 0, 0)) == 0)
    rc = es__fail(s, ES_EINVAL, "the text query \"%s\" has no word that text "
                  "search keeps (only stop words or punctuation for this "
                  "store's configuration)", sc->p->text);
  PQclear(r);
  return rc;
}

/* The store's chunk index, for a chunk search: asked of the database
 * until it is there, then remembered (it is never removed). */
static es_status need_chunk_index(es_store *s, es__conn *c) {
  pthread_mutex_lock(&s->shape_mu);
  bool wanted = s->chunk_index_seen;
  pthread_mutex_unlock(&s->shape_mu);
  if (wanted)
    return ES_OK;
  es_status rc = es__chunk_index_wanted(s, c, &wanted);
  if (rc == ES_OK && wanted) {
    pthread_mutex_lock(&s->shape_mu);
    s->chunk_index_seen = true;
    pthread_mutex_unlock(&s->shape_mu);
  }
  if (rc == ES_OK && !wanted)
    rc = es__fail(s, ES_EINVAL, "this store has no chunk index: add it with "
                  "`embstore init --dim %d --chunk-index` (it builds an HNSW "
                  "index on the chunks' vectors), then search --chunks", s->dim);
  return rc;
}

/* A query vector of model: refused when the vectors searched (kind 'd'
 * documents, 'c' chunks) include another model's.  Vectors whose model
 * was never said are no evidence either way.  A store from before
 * migration 9 has no counts: nothing to check against. */
static es_status check_model(es_store *s, es__conn *c, const char *model,
                             bool chunks) {
  const char *v[2] = {model, chunks ? "c" : "d"};
  PGresult *r = PQexecParams(
      c->pg,
      "SELECT model, sum(vectors)::int8 FROM embstore_model_counts "
      "WHERE kind = $2::\"char\" AND model IS NOT NULL AND model <> $1 "
      "GROUP BY model HAVING sum(vectors) > 0 ORDER BY 2 DESC, 1 LIMIT 1",
      2, NULL, v, NULL, NULL, 0);
  es_status rc = ES_OK;
  const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  if (PQresultStatus(r) == PGRES_FATAL_ERROR && state && !strcmp(state, "42P01"))
    rc = ES_OK; /* undefined_table: before migration 9 */
  else if (!es__res_ok(r))
    rc = es__fail_pg(s, c->pg, r, "cannot read the store's models");
  else if (PQntuples(r) > 0)
    rc = es__fail(s, ES_ECONFLICT, "the query vector was made by model \"%s\", "
                  "but %s %s of this store were made by model \"%s\": "
                  "distances between two models' vectors mean nothing; "
                  "search with any_model (--any-model) to search anyway",
                  model, PQgetvalue(r, 0, 1), chunks ? "chunk vectors"
                                                     : "document vectors",
                  PQgetvalue(r, 0, 0));
  PQclear(r);
  return rc;
}

/* Whether the filters of flags select at most EXACT_BELOW documents by
 * the planner's estimate (EXPLAIN, not run: a fraction of a millisecond).
 * An HNSW scan that must skip the rows a filter rejects walks about k /
 * selectivity of the graph: at 1% of 100,000 documents of 384 dimensions
 * that took 143 ms where an exact scan of the 1,000 matching rows took 10
 * ms (bench/run search; EXPLAIN ANALYZE of both). */
static es_status few_matches(es_store *s, es__conn *c, const es_search_params *p,
                             int flags, bool *few) {
  char where[256], sql[400];
  int n = 1;
  where_clause(where, sizeof where, flags & (F_WORKSPACE | F_SOURCE | F_FILTER),
               &n, p->chunks ? "e." : "");
  /* A chunk search scans chunks with a vector, through their documents. */
  snprintf(sql, sizeof sql, p->chunks
               ? "EXPLAIN SELECT 1 FROM chunks c JOIN embeddings e ON e.id = "
                 "c.document_id WHERE c.embedding IS NOT NULL%s"
               : "EXPLAIN SELECT 1 FROM embeddings e WHERE e.embedding IS NOT "
                 "NULL%s", where);
  const char *v[3];
  int nv = 0;
  if (flags & F_WORKSPACE)
    v[nv++] = p->workspace;
  if (flags & F_SOURCE)
    v[nv++] = p->source_id;
  if (flags & F_FILTER)
    v[nv++] = p->filter_json;
  PGresult *r = PQexecParams(c->pg, sql, nv, NULL, v, NULL, NULL, 0);
  if (!es__res_ok(r)) {
    es_status rc = es__fail_pg(s, c->pg, r, "search failed");
    PQclear(r);
    return rc;
  }
  const char *rows = PQntuples(r) > 0 ? strstr(PQgetvalue(r, 0, 0), " rows=") : NULL;
  *few = rows != NULL && strtoll(rows + 6, NULL, 10) <= EXACT_BELOW;
  PQclear(r);
  return ES_OK;
}

/* Whether the store holds more than n vectors of the kind searched (the
 * exact counters; chunks are counted with or without a vector, which
 * can only ask for a scan that was not needed); false when the counters
 * cannot be read (a store from before them keeps the index's hits). */
static bool more_vectors(es__conn *c, bool chunks, size_t n) {
  PGresult *r = PQexec(c->pg, chunks
                                  ? "SELECT coalesce(sum(chunks), 0) FROM embstore_counts"
                                  : "SELECT coalesce(sum(documents) - "
                                    "sum(without_vector), 0) FROM embstore_counts");
  bool more = es__res_ok(r) &&
              strtoll(PQgetvalue(r, 0, 0), NULL, 10) > (long long)n;
  PQclear(r);
  return more;
}

/* The search on a pooled connection: the query vector checked (or read
 * from the like document), then the index scan, and an exact scan when a
 * scan found fewer than k rows where more would match. */
static es_status search_op(es_store *s, es__conn *c, void *arg) {
  search_ctx *sc = arg;
  const es_search_params *p = sc->p;
  es_status rc = es__load_shape(s, c);
  if (rc == ES_OK && sc->mode != ES_SEARCH_VECTOR)
    rc = need_text(s, c, &sc->text_oid);
  if (rc == ES_OK && p->chunks)
    rc = need_chunk_index(s, c);
  if (rc == ES_OK && p->model && !p->any_model && sc->mode != ES_SEARCH_TEXT)
    rc = check_model(s, c, p->model, p->chunks != 0);
  if (rc != ES_OK)
    return rc;
  int dim = s->dim;
  es_metric metric = s->metric;
  if (sc->mode == ES_SEARCH_TEXT) {
    /* no vector */
  } else if (p->vector) {
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
  bool text = sc->mode == ES_SEARCH_TEXT;
  int flags = (p->workspace ? F_WORKSPACE : 0) | (p->source_id ? F_SOURCE : 0) |
              (p->like_id && !text ? F_EXCLUDE : 0) |
              (p->exact && !text ? F_EXACT : 0) | (p->filter_json ? F_FILTER : 0);
  /* A selective filter is answered exactly, and sooner, from the rows
   * it selects than by walking the graph past all those it rejects. */
  if (!text && !(flags & F_EXACT) && (flags & (F_WORKSPACE | F_SOURCE | F_FILTER))) {
    bool few = false;
    if ((rc = few_matches(s, c, p, flags, &few)) != ES_OK)
      return rc;
    if (few)
      flags |= F_EXACT;
  }
  rc = run_search(s, c, sc, metric, dim, flags);
  if (rc == ES_OK && text && sc->res->n == 0)
    rc = check_words(s, c, sc);
  if (rc == ES_OK && !text && !(flags & F_EXACT) &&
      (p->workspace || p->source_id || p->filter_json) &&
      sc->res->n < (size_t)p->k)
    rc = run_search(s, c, sc, metric, dim, flags | F_EXACT);
  else if (rc == ES_OK && sc->mode == ES_SEARCH_VECTOR &&
           !(flags & F_EXACT) && sc->res->n < (size_t)p->k) {
    /* Fewer hits than asked from a store that holds more: the graph did
     * not reach them (pgvector's HNSW, with many identical vectors, some
     * of them deleted and not yet vacuumed, can return none at all). */
    if (more_vectors(c, p->chunks != 0,
                     sc->res->n + ((flags & F_EXCLUDE) ? 1 : 0)))
      rc = run_search(s, c, sc, metric, dim, flags | F_EXACT);
  }
  return rc;
}

void es_search_params_init(es_search_params *params) {
  memset(params, 0, sizeof *params);
  params->k = 10;
}

/* Checks search parameters at the door and resolves the mode, the RRF
 * constant and the weights into sc. */
static es_status check_params(es_store *s, const es_search_params *p,
                              search_ctx *sc) {
  if (p == NULL)
    return es__fail(s, ES_EINVAL, "search parameters are NULL");
  if (p->vector && p->like_id)
    return es__fail(s, ES_EINVAL, "give a query vector or a document id "
                    "(like), not both");
  bool by_vector = p->vector || p->like_id, by_text = p->text != NULL;
  es_search_mode mode = p->mode;
  if ((unsigned)mode > ES_SEARCH_HYBRID)
    return es__fail(s, ES_EINVAL, "unknown search mode %d", (int)mode);
  if (mode == ES_SEARCH_AUTO)
    mode = by_vector && by_text ? ES_SEARCH_HYBRID
           : by_text            ? (s->embedder ? ES_SEARCH_HYBRID : ES_SEARCH_TEXT)
                                : ES_SEARCH_VECTOR;
  /* The provider embeds the text when the mode needs a vector. */
  sc->embed = mode != ES_SEARCH_TEXT && !by_vector && by_text && s->embedder;
  if (sc->embed)
    by_vector = true;
  if (!by_vector && !by_text)
    return es__fail(s, ES_EINVAL, "give a query vector, a document id (like) "
                    "or a text query");
  if (mode == ES_SEARCH_TEXT && by_vector)
    return es__fail(s, ES_EINVAL, "a text search takes no vector and no like "
                    "(hybrid mode fuses them with the text)");
  if (mode != ES_SEARCH_TEXT && !by_vector)
    return es__fail(s, ES_EINVAL, "%s mode needs a query vector or a document "
                    "id (like): embedding the text needs an embedding provider, "
                    "and none is configured", es_search_mode_name(mode));
  if (mode == ES_SEARCH_VECTOR && by_text && !sc->embed)
    return es__fail(s, ES_EINVAL, "vector mode takes a text query only to "
                    "embed it, without a query vector or like");
  if (mode == ES_SEARCH_HYBRID && !by_text)
    return es__fail(s, ES_EINVAL, "hybrid mode needs a text query too");
  if (p->model && (p->model[0] == '\0' || strlen(p->model) > ES__MODEL_MAX))
    return es__fail(s, ES_EINVAL, "model must be 1..%d bytes", ES__MODEL_MAX);
  if (by_text) {
    if (p->text[0] == '\0')
      return es__fail(s, ES_EINVAL, "the text query is empty");
    long bad = es__utf8_invalid_at(p->text, strlen(p->text));
    if (bad >= 0)
      return es__fail(s, ES_EINVAL, "the text query is not valid UTF-8 (byte "
                      "%ld)", bad);
  }
  if (p->k < 1 || p->k > MAX_K)
    return es__fail(s, ES_EINVAL, "k must be 1..%d, not %d", MAX_K, p->k);
  if (p->rrf_k < 0 || p->rrf_k > 10000)
    return es__fail(s, ES_EINVAL, "rrf_k must be 1..10000, not %d", p->rrf_k);
  if (!(p->weight_vector >= 0) || !(p->weight_text >= 0) ||
      !isfinite(p->weight_vector) || !isfinite(p->weight_text))
    return es__fail(s, ES_EINVAL, "weights must be finite and not negative");
  sc->mode = mode;
  sc->rrf_k = p->rrf_k ? p->rrf_k : DEFAULT_RRF_K;
  bool unweighted = p->weight_vector == 0 && p->weight_text == 0;
  sc->w_vector = unweighted ? 1 : p->weight_vector;
  sc->w_text = unweighted ? 1 : p->weight_text;
  return es__check_filter(s, p->filter_json);
}

/* The cache key: everything that decides the answer. */
static bool cache_key(const es_search_params *p, const search_ctx *sc,
                      es__buf *key) {
  char head[128];
  int n = es__snprintf_c(head, sizeof head, "%c%d/%d/%d/%d/%a/%a/%d/%d/",
                         sc->embed ? 'e' : p->vector ? 'v' : 'l', p->k, p->exact, (int)sc->mode,
                         sc->rrf_k, sc->w_vector, sc->w_text, p->chunks != 0,
                         p->any_model != 0);
  bool ok = es__buf_append(key, head, (size_t)n);
  const char *parts[6] = {p->workspace, p->source_id, p->like_id,
                          p->filter_json, p->text,
                          sc->embed ? NULL : p->model}; /* a store has one provider */
  for (int i = 0; ok && i < 6; i++) {
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
  search_ctx sc = {.p = p};
  es_status rc = check_params(s, p, &sc);
  if (rc != ES_OK)
    return rc;

  /* A search near a stored document depends on that document, whatever
   * its source: only plain source-filtered searches depend on one source. */
  const char *depends_on = p->like_id ? NULL : p->source_id;
  es__buf key = {0};
  bool cached = s->cache != NULL && cache_key(p, &sc, &key);
  es__cache_ticket ticket;
  if (cached) {
    /* A hit counts only once every other process's commit that came
     * before this search is applied (listen.c): then look again.  The
     * listener starts with the first answer the cache could give, not
     * before: a one-shot program never needs it, and starting invalidates
     * whatever was stored before it listened. */
    es_results *hit = NULL;
    if (es__cache_peek(s->cache, key.data, key.len)) {
      es__listener_start(s->listener); /* (re)connects when not listening */
      if (es__listener_sync(s->listener))
        hit = es__cache_get(s->cache, key.data, key.len);
      else
        es__cache_count_miss(s->cache);
    }
    if (hit) {
      es__buf_free(&key);
      record(s, t0, ES_OK, "hit");
      *out = hit;
      return ES_OK;
    }
    es__cache_take_ticket(s->cache, depends_on, &ticket); /* before the query */
  }
  es_search_params embedded;
  float *qv = NULL;
  if (sc.embed) { /* only now: a cached answer needs no request */
    const char *texts[1] = {p->text};
    if ((rc = es_embed(s, texts, 1, &qv)) != ES_OK) {
      es__buf_free(&key);
      record(s, t0, rc, cached ? "miss" : "off");
      return es__fail_wrap(s, rc, "cannot embed the text query");
    }
    embedded = *p;
    embedded.vector = qv;
    embedded.dim = (size_t)s->dim;
    embedded.model = es_embed_model(s);
    sc.p = &embedded;
  }
  sc.res = calloc(1, sizeof *sc.res);
  if (sc.res == NULL) {
    free(qv);
    es__buf_free(&key);
    return es__fail(s, ES_ENOMEM, "out of memory");
  }
  rc = es__run_read(s, NULL, cached, search_op, &sc, NULL);
  free(qv);
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
