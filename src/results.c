/* results.c - search results (es_results): the one place that knows the
 * fields of an es_hit, for copying (the search cache) and freeing. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Frees the hits of res and leaves it empty (res itself is kept). */
void es__results_clear(es_results *res) {
  assert(res != NULL);
  for (size_t i = 0; i < res->n; i++) {
    free(res->hits[i].id);
    free(res->hits[i].text);
    free(res->hits[i].source_id);
    free(res->hits[i].metadata_json);
    free(res->hits[i].document_id);
  }
  free(res->hits);
  res->hits = NULL;
  res->n = 0;
}

/* Copies one hit into d (zeroed); false when out of memory, with what
 * was copied left in d for es__results_clear. */
static bool hit_copy(es_hit *d, const es_hit *h) {
  d->distance = h->distance;
  d->score = h->score;
  d->vector_rank = h->vector_rank;
  d->text_rank = h->text_rank;
  d->id = strdup(h->id);
  d->text = strdup(h->text);
  d->metadata_json = strdup(h->metadata_json);
  d->source_id = h->source_id ? strdup(h->source_id) : NULL;
  d->document_id = h->document_id ? strdup(h->document_id) : NULL;
  d->chunk_index = h->chunk_index;
  return d->id && d->text && d->metadata_json && (!h->source_id || d->source_id) &&
         (!h->document_id || d->document_id);
}

/* Bytes one hit's strings take. */
static size_t hit_bytes(const es_hit *h) {
  return strlen(h->id) + strlen(h->text) + strlen(h->metadata_json) + 3 +
         (h->source_id ? strlen(h->source_id) + 1 : 0) +
         (h->document_id ? strlen(h->document_id) + 1 : 0);
}

/* A deep copy of r (freed with es_results_free), or NULL when out of
 * memory; *bytes (may be NULL) receives the memory it takes. */
es_results *es__results_copy(const es_results *r, size_t *bytes) {
  assert(r != NULL && (r->n == 0 || r->hits != NULL));
  es_results *c = calloc(1, sizeof *c);
  if (c == NULL)
    return NULL;
  c->hits = calloc(r->n ? r->n : 1, sizeof *c->hits);
  if (c->hits == NULL) {
    free(c);
    return NULL;
  }
  c->mode = r->mode;
  size_t b = sizeof *c + r->n * sizeof *c->hits;
  for (size_t i = 0; i < r->n; i++) {
    c->n++; /* counted first, so that a partial copy is freed */
    if (!hit_copy(&c->hits[i], &r->hits[i])) {
      es_results_free(c);
      return NULL;
    }
    b += hit_bytes(&r->hits[i]);
  }
  if (bytes)
    *bytes = b;
  return c;
}

/* Frees res and its hits (NULL: nothing). */
void es_results_free(es_results *res) {
  if (res == NULL)
    return;
  es__results_clear(res);
  free(res);
}
