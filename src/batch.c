/* batch.c - batch upsert: the write path at COPY speed, with exact
 * per-document accounting.  This file holds the session (es_batch_begin,
 * es_batch_add, es_batch_end) and the public API; the phases of the work
 * are in batch_prepare.c, batch_write.c and batch_index.c, what they
 * share in batch_utils.c (batch_int.h describes how a batch is written). */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch_int.h"
#include "cache.h"
#include "schema.h"

#define DEFAULT_BATCH 1000
#define MAX_BATCH 100000

/* Sets the defaults of a batch session's options. */
void es_batch_options_init(es_batch_options *o) {
  memset(o, 0, sizeof *o);
  o->batch_size = DEFAULT_BATCH;
}

/* ---- accounting ----------------------------------------------------------- */

/* Documents accounted for so far. */
static size_t accounted(const es_batch_result *r) {
  return r->inserted + r->updated + r->unchanged + r->failed + r->duplicates;
}

/* Records every document of a call as failed (out of memory before any
 * could be looked at). */
static void fail_all(es_batch *b, const es_doc *docs, size_t n,
                     const size_t *positions) {
  for (size_t i = 0; i < n; i++)
    es__batch_add_failure(b, es__batch_usable_id(&docs[i]),
                          positions ? positions[i] : b->next_position + i,
                          ES_ENOMEM, "out of memory");
  b->next_position += n;
}

/* Reads whether chunks has the model column (migration 9). */
static es_status chunk_model_lookup(es_batch *b) {
  PGresult *r = PQexec(b->conn->pg,
                       "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE "
                       "attrelid = 'chunks'::regclass AND attname = 'model' "
                       "AND NOT attisdropped)");
  es_status rc = ES_OK;
  if (!es__res_ok(r))
    rc = es__fail_pg(b->s, b->conn->pg, r, "cannot read the chunks' columns");
  else
    b->chunk_model = PQgetvalue(r, 0, 0)[0] == 't';
  PQclear(r);
  return rc;
}

/* Connects the session and reads whether the chunks' key is validated.
 * The connection may be one the server closed while it idled in the
 * pool: a transient failure gets a fresh one. */
static es_status connect_session(es_batch *b) {
  es__retry rt;
  es_status rc = ES_OK;
  es__retry_init(&rt, b->s, true);
  while (es__retry_next(&rt)) {
    es__fk_state fk;
    rc = es__batch_conn(b);
    if (rc == ES_OK && (rc = es__fk_lookup(b->s, b->conn, &fk)) == ES_OK &&
        (rc = chunk_model_lookup(b)) == ES_OK) {
      b->fk_valid = fk.exists && fk.valid;
      b->distributed = es__distributed(b->s, b->conn);
      return ES_OK;
    }
    if (!es__last_err(b->s)->transient)
      break;
    es__discard(b->s, b->conn);
    b->conn = NULL;
  }
  return rc;
}

/* ---- the session ---------------------------------------------------------- */

/* Opens a batch session: options checked, the store's shape read, the
 * session connected and what a killed load left mended. */
es_status es_batch_begin(es_store *s, const es_batch_options *opts,
                         es_batch **out) {
  if (s == NULL || out == NULL)
    return ES_EINVAL;
  *out = NULL;
  es__clear_err(s);
  es_batch *b = calloc(1, sizeof *b);
  if (b == NULL)
    return es__fail(s, ES_ENOMEM, "out of memory");
  b->s = s;
  if (opts)
    b->opts = *opts;
  else
    es_batch_options_init(&b->opts);
  if (b->opts.batch_size == 0)
    b->opts.batch_size = DEFAULT_BATCH;
  if (b->opts.batch_size > MAX_BATCH) {
    free(b);
    return es__fail(s, ES_EINVAL, "batch size must be 1..%d, not %zu",
                    MAX_BATCH, opts->batch_size);
  }
  es_status rc = es_store_shape(s, &b->dim, &b->metric);
  if (rc == ES_OK)
    rc = connect_session(b);
  if (rc != ES_OK) {
    es_batch_end(b, NULL);
    return rc;
  }
  es__batch_mend_indexes(b);
  *out = b;
  return ES_OK;
}

/* The working arrays of one es_batch_add call. */
typedef struct add_work {
  es__item *it;  /* the valid documents, in input order */
  es__item *cur; /* the round being written */
  es__item *tmp; /* room for partitioning a round */
  size_t *round; /* indexes into it of the round's items */
} add_work;

/* Allocates the arrays for n documents; false when out of memory. */
static bool work_alloc(add_work *w, size_t n) {
  size_t cap = n ? n : 1;
  w->it = calloc(cap, sizeof *w->it);
  w->cur = calloc(cap, sizeof *w->cur);
  w->tmp = malloc(cap * sizeof *w->tmp);
  w->round = malloc(cap * sizeof *w->round);
  return w->it && w->cur && w->tmp && w->round;
}

/* Frees the arrays (the items' strings belong to the rounds). */
static void work_free(add_work *w) {
  free(w->it);
  free(w->cur);
  free(w->tmp);
  free(w->round);
}

/* Tells the progress callback how far the session is. */
static void report_progress(es_batch *b, size_t total) {
  size_t done = b->processed < total ? b->processed : total;
  if (b->opts.progress)
    b->opts.progress(done, total, b->opts.user);
  if (b->opts.phase) {
    size_t expected = b->opts.total >= done ? b->opts.total : 0;
    es_phase_info info = {ES_PHASE_LOADING,
                          expected ? (double)done / (double)expected : -1,
                          done, expected, NULL};
    b->opts.phase(&info, b->opts.user);
  }
}

/* Writes the ready items of a round, batch by batch, hashing the next
 * batch meanwhile.  When writing becomes impossible, the items not yet
 * written are recorded as failed and the failure returned. */
static es_status write_ready(es_batch *b, es__item *cur, size_t ready,
                             size_t total) {
  size_t size = b->opts.batch_size;
  for (size_t lo = 0; lo < ready; lo += size) {
    size_t len = ready - lo < size ? ready - lo : size;
    size_t rest = ready - lo - len;
    es__prehash next;
    es__prehash_start(&next, cur + lo + len, rest < size ? rest : size);
    es_status rc = es__batch_write_range(b, cur + lo, len);
    es__prehash_wait(&next);
    b->processed += len;
    if (rc != ES_OK && rc != ES_ECONNECT && rc != ES_ENOMEM)
      rc = ES_OK; /* that range is recorded as failed; the next may land */
    if (rc != ES_OK) {
      /* Writing is impossible now: what follows did not land either. */
      char msg[1100];
      snprintf(msg, sizeof msg, "not written: %s", es__last_err(b->s)->msg);
      for (size_t i = lo + len; i < ready; i++)
        es__batch_fail_item(b, &cur[i], rc, msg);
      return rc;
    }
    report_progress(b, total);
  }
  return ES_OK;
}

/* Copies the round's items (indexes into w->it) into w->cur. */
static void load_round(add_work *w, size_t n_round) {
  for (size_t k = 0; k < n_round; k++) {
    w->cur[k] = w->it[w->round[k]];
    w->cur[k].src = w->round[k];
    w->cur[k].rewrite_chunks = w->cur[k].doc->has_chunks;
  }
}

/* The next round: each failed item of this one falls back on the previous
 * occurrence of its id (none after a failure that stops writing).  Frees
 * what the round's items own; returns the next round's size. */
static size_t next_round(es_batch *b, add_work *w, size_t n_round, es_status rc) {
  size_t next = 0;
  for (size_t k = 0; k < n_round; k++) {
    es__item *x = &w->cur[k];
    if (rc == ES_OK && x->failed && w->it[x->src].prev >= 0) {
      w->round[next++] = (size_t)w->it[x->src].prev;
      b->res.duplicates--; /* no longer folded: it stands for itself */
    }
    free(x->error);
    free(x->old_source);
  }
  return next;
}

/* Writes the m valid items of a call of n documents.  The standing
 * occurrences are written; when one fails, the occurrence of its id
 * before it (if any, and valid) takes its place: the last line that can
 * land wins, and nothing valid is lost. */
static es_status write_rounds(es_batch *b, add_work *w, size_t m, size_t n) {
  size_t n_round = 0;
  for (size_t i = 0; i < m; i++)
    if (!w->it[i].folded)
      w->round[n_round++] = i;
  size_t total = b->opts.total ? b->opts.total : n;
  b->processed += n - n_round; /* invalid and folded ones are accounted */
  es_status rc = ES_OK;
  for (bool first = true; n_round > 0; first = false) {
    load_round(w, n_round);
    es__batch_check_chunk_claims(b, w->cur, n_round);
    size_t ready = es__batch_partition_ready(w->cur, n_round, w->tmp);
    if (first && ready > 0)
      es__batch_maybe_defer_index(b, w->cur, ready);
    rc = write_ready(b, w->cur, ready, total);
    n_round = next_round(b, w, n_round, rc);
  }
  return rc;
}

/* Validates, folds and writes docs[0..n); every document ends up counted
 * once: inserted, updated, unchanged, failed or a duplicate. */
static es_status add_docs(es_batch *b, const es_doc *docs, size_t n,
                          const size_t *positions) {
  es_store *s = b->s;
  size_t failed_before = b->res.failed, accounted_before = accounted(&b->res);
  add_work w;
  if (!work_alloc(&w, n)) {
    work_free(&w);
    fail_all(b, docs, n, positions);
    return es__fail(s, ES_ENOMEM, "out of memory");
  }
  size_t m = es__batch_validate(b, docs, n, positions, w.it), folded = 0;
  es_status rc = ES_OK;
  if (!es__batch_fold_duplicates(w.it, m, &folded)) {
    for (size_t i = 0; i < m; i++)
      es__batch_fail_item(b, &w.it[i], ES_ENOMEM, "out of memory");
    rc = es__fail(s, ES_ENOMEM, "out of memory");
  } else {
    b->res.duplicates += folded;
    rc = write_rounds(b, &w, m, n);
  }
  work_free(&w);
  /* Every document given is inserted, updated, unchanged, failed or a
   * duplicate: exactly once, on every path. */
  assert(accounted(&b->res) - accounted_before == n);
  (void)accounted_before;
  if (rc != ES_OK)
    return rc;
  if (b->oom)
    return es__fail(s, ES_ENOMEM, "out of memory (validating the documents "
                    "or recording which failed)");
  if (b->res.failed > failed_before)
    return es__fail(s, ES_EPARTIAL, "%zu of %zu documents failed",
                    b->res.failed - failed_before, n);
  return ES_OK;
}

/* Embeds what has text but no vector, then adds the documents: those the
 * provider could not embed fail with its message, the others go on. */
static es_status add_embedded(es_batch *b, const es_doc *docs, size_t n,
                              const size_t *positions) {
  es_store *s = b->s;
  size_t failed_before = b->res.failed, next = b->next_position + n;
  es__embedded e;
  size_t *pos = malloc((n ? n : 1) * sizeof *pos);
  es_doc *ok = malloc((n ? n : 1) * sizeof *ok);
  if (pos == NULL || ok == NULL ||
      es__docs_embed(s, docs, n, (size_t)b->dim, &e) != ES_OK) {
    free(pos);
    free(ok);
    fail_all(b, docs, n, positions);
    return es__fail(s, ES_ENOMEM, "out of memory (embedding the documents)");
  }
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    size_t p = positions ? positions[i] : b->next_position + i;
    if (e.errs[i] != NULL) {
      es__batch_add_failure(b, es__batch_usable_id(&docs[i]), p, e.st[i],
                            e.errs[i]);
      continue;
    }
    ok[m] = e.docs[i];
    pos[m++] = p;
  }
  b->processed += n - m; /* those that failed are done with, for progress */
  es_status rc = add_docs(b, ok, m, pos);
  b->next_position = next;
  es__embedded_free(&e);
  free(pos);
  free(ok);
  if (rc != ES_OK && rc != ES_EPARTIAL)
    return rc;
  if (b->res.failed > failed_before)
    return es__fail(s, ES_EPARTIAL, "%zu of %zu documents failed",
                    b->res.failed - failed_before, n);
  return rc;
}

es_status es_batch_add(es_batch *b, const es_doc *docs, size_t n,
                       const size_t *positions) {
  if (b == NULL || (docs == NULL && n > 0))
    return ES_EINVAL;
  es__clear_err(b->s);
  b->oom = false;
  if (b->s->embedder && es__docs_need_embedding(docs, n))
    return add_embedded(b, docs, n, positions);
  return add_docs(b, docs, n, positions);
}

/* The session's totals so far (owned by the session). */
const es_batch_result *es_batch_totals(const es_batch *b) { return &b->res; }

/* Whether the session dropped the HNSW index, to build it at its end. */
int es_batch_index_deferred(const es_batch *b) { return b && b->index_deferred; }

/* Why the HNSW index was kept during a large load, or NULL. */
const char *es_batch_note(const es_batch *b) {
  return b && b->note[0] ? b->note : NULL;
}

/* Frees the failures of r (r itself is kept). */
static void free_parts(es_batch_result *r) {
  for (size_t i = 0; i < r->n_failures; i++) {
    free(r->failures[i].id);
    free(r->failures[i].error);
  }
  free(r->failures);
  r->failures = NULL;
  r->n_failures = 0;
}

/* Frees a result of es_batch_end or es_batch_upsert (NULL: nothing). */
void es_batch_result_free(es_batch_result *r) {
  if (r == NULL)
    return;
  free_parts(r);
  free(r);
}

/* Orders failures by position. */
static int cmp_failure(const void *a, const void *b) {
  const es_batch_failure *x = a, *y = b;
  return x->position < y->position ? -1 : x->position > y->position;
}

/* Hands the session's totals over to a malloc'd result (NULL when out of
 * memory), failures in input order. */
static es_batch_result *take_result(es_batch *b) {
  if (b->res.n_failures > 1)
    qsort(b->res.failures, b->res.n_failures, sizeof *b->res.failures, cmp_failure);
  es_batch_result *r = malloc(sizeof *r);
  if (r != NULL) {
    *r = b->res;
    b->res.failures = NULL;
    b->res.n_failures = 0;
  }
  return r;
}

/* Ends the session: the deferred index built, statistics and counters
 * brought up to date, the connection returned; *out (may be NULL)
 * receives the totals. */
es_status es_batch_end(es_batch *b, es_batch_result **out) {
  if (out)
    *out = NULL;
  if (b == NULL)
    return ES_OK;
  es_status rc = b->index_deferred ? es__batch_rebuild_index(b) : ES_OK;
  if (b->index_deferred && b->conn && PQstatus(b->conn->pg) == CONNECTION_OK)
    /* The build failed: the lock must not outlive this session in the
     * pool, or the next session would take it for a load still running
     * and leave the index missing. */
    PQclear(PQexec(b->conn->pg,
                   "SELECT pg_advisory_unlock_shared(" ES__DEFER_LOCK ")"));
  es__batch_analyze(b);
  if (b->res.batches > 0 && b->conn && PQstatus(b->conn->pg) == CONNECTION_OK)
    es__batch_compact_counts(b);
  if (b->index_deferred || b->res.batches > 0) /* index builds, ANALYZE */
    es__replica_wrote(b->s);
  if (b->conn) {
    /* The session's temp tables die with the session: end it cleanly. */
    if ((b->temp_ready || b->seen_ready) && PQstatus(b->conn->pg) == CONNECTION_OK)
      PQclear(PQexec(b->conn->pg, "DISCARD TEMP"));
    es__release(b->s, b->conn);
  }
  es__copy_free(&b->copy);
  es__buf_free(&b->stamps);
  if (out && (*out = take_result(b)) == NULL && rc == ES_OK)
    rc = es__fail(b->s, ES_ENOMEM, "out of memory for the batch result");
  free_parts(&b->res);
  free(b);
  return rc;
}

/* One session for docs[0..n): begin, add, end. */
es_status es_batch_upsert(es_store *s, const es_doc *docs, size_t n,
                          const es_batch_options *opts, es_batch_result **out) {
  es_batch *b = NULL;
  es_batch_options o;
  if (out)
    *out = NULL;
  if (opts)
    o = *opts;
  else
    es_batch_options_init(&o);
  if (o.total == 0)
    o.total = n;
  es_status rc = es_batch_begin(s, &o, &b);
  if (rc != ES_OK)
    return rc;
  rc = es_batch_add(b, docs, n, NULL);
  char saved[1024];
  snprintf(saved, sizeof saved, "%s", es_errmsg(s));
  es_status end = es_batch_end(b, out);
  if (rc == ES_OK || rc == ES_EPARTIAL) {
    if (end != ES_OK)
      return end;
  }
  if (rc != ES_OK)
    es__fail(s, rc, "%s", saved);
  return rc;
}
