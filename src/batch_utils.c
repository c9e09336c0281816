/* batch_utils.c - what the phases of a batch session share (as
 * pgvector's hnswutils.c): the accounting of documents, the session's
 * connection, and the ids of a batch (see batch_int.h). */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "batch_int.h"
#include "cache.h"

/* ---- accounting ----------------------------------------------------------- */

/* The document's id when it is fit to be quoted: valid, bounded UTF-8. */
const char *es__batch_usable_id(const es_doc *d) {
  if (d->id == NULL || d->id[0] == '\0')
    return NULL;
  size_t n = strlen(d->id);
  if (n > ES_MAX_ID_BYTES || es__utf8_invalid_at(d->id, n) >= 0)
    return NULL;
  return d->id;
}

/* Counts a failure and details it (id, position, why) as far as memory
 * allows. */
void es__batch_add_failure(es_batch *b, const char *id, size_t position,
                           es_status status, const char *msg) {
  es_batch_result *r = &b->res;
  r->failed++;
  if (r->n_failures == b->cap_failures) {
    size_t cap = b->cap_failures ? b->cap_failures * 2 : 64;
    es_batch_failure *g = realloc(r->failures, cap * sizeof *g);
    if (g == NULL) {
      b->oom = true; /* counted, not detailed: the call says ES_ENOMEM */
      return;
    }
    r->failures = g;
    b->cap_failures = cap;
  }
  es_batch_failure *f = &r->failures[r->n_failures++];
  f->id = id ? strdup(id) : NULL;
  f->position = position;
  f->status = status;
  f->error = strdup(msg ? msg : "unknown error");
  if (f->error)
    es__utf8_scrub(f->error);
  if (f->error == NULL || (id != NULL && f->id == NULL))
    b->oom = true;
}

/* Marks an item failed and records why. */
void es__batch_fail_item(es_batch *b, es__item *x, es_status status,
                         const char *msg) {
  assert(!x->failed);
  x->failed = true;
  es__batch_add_failure(b, x->doc->id, x->position, status, msg);
}

/* Counts each item of a committed batch once, by its outcome. */
void es__batch_apply(es_batch *b, es__item *it, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (it[i].out == ES__OUT_INSERTED || it[i].out == ES__OUT_UPDATED) {
      es__cache_invalidate_source(b->s->cache, it[i].doc->source_id);
      if (it[i].old_source)
        es__cache_invalidate_source(b->s->cache, it[i].old_source);
    }
    if (it[i].out == ES__OUT_FAILED) {
      es__batch_fail_item(b, &it[i], ES_ECONFLICT, it[i].error);
    } else if (it[i].seen) {
      b->res.duplicates++;
    } else if (it[i].out == ES__OUT_INSERTED) {
      b->res.inserted++;
    } else if (it[i].out == ES__OUT_UPDATED) {
      b->res.updated++;
    } else {
      assert(it[i].out == ES__OUT_UNCHANGED);
      b->res.unchanged++;
    }
  }
}

/* ---- the connection and the batch's ids ----------------------------------- */

/* Keeps the session's connection, or gets a fresh one for a broken one. */
es_status es__batch_conn(es_batch *b) {
  if (b->conn && PQstatus(b->conn->pg) == CONNECTION_OK)
    return ES_OK;
  if (b->conn) {
    es__discard(b->s, b->conn);
    b->conn = NULL;
  }
  b->temp_ready = false;
  b->seen_ready = false;
  return es__acquire(b->s, &b->conn);
}

/* The id of item i (for es__text_array). */
static const char *item_id(const void *items, size_t i) {
  return ((const es__item *)items)[i].doc->id;
}

/* A text[] literal of the items' ids. */
char *es__batch_ids(const es__item *it, size_t n) {
  return es__text_array(it, n, item_id);
}

/* Counts the stored documents among ids. */
long long es__batch_count_stored(es_batch *b, const char *ids) {
  const char *v[1] = {ids};
  PGresult *r = es__exec_stmt(b->conn, ES__Q_BATCH_PROBE, 1, v, NULL, NULL, 0);
  long long n = -1;
  if (es__res_ok(r))
    n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  else
    es__fail_pg(b->s, b->conn->pg, r, "cannot probe stored documents");
  PQclear(r);
  return n;
}
