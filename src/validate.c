/* validate.c - checks a document before anything is sent.
 *
 * Each check is a small static function called at the door; messages name
 * the field (and chunk) so that a user can find the bad value. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "json.h"

/* An id: present, at most ES_MAX_ID_BYTES, valid UTF-8. */
static inline es_status check_id(const char *id, const char *field, char *err,
                                 size_t errlen) {
  if (id == NULL || id[0] == '\0') {
    snprintf(err, errlen, "%s is missing or empty", field);
    return ES_EINVAL;
  }
  size_t n = strlen(id);
  if (n > ES_MAX_ID_BYTES) {
    snprintf(err, errlen, "%s is %zu bytes long; the limit is %d", field, n,
             ES_MAX_ID_BYTES);
    return ES_EINVAL;
  }
  long bad = es__utf8_invalid_at(id, n);
  if (bad >= 0) {
    snprintf(err, errlen, "%s is not valid UTF-8 (byte %ld)", field, bad + 1);
    return ES_EINVAL;
  }
  return ES_OK;
}

/* Free text: valid UTF-8 (a C string cannot hold NUL bytes). */
static inline es_status check_text(const char *s, const char *field, char *err,
                                   size_t errlen) {
  if (s == NULL)
    return ES_OK;
  long bad = es__utf8_invalid_at(s, strlen(s));
  if (bad >= 0) {
    snprintf(err, errlen, "%s is not valid UTF-8 (byte %ld)", field, bad + 1);
    return ES_EINVAL;
  }
  return ES_OK;
}

/* A model's name: NULL, or 1..ES__MODEL_MAX bytes of UTF-8. */
static inline es_status check_model(const char *m, const char *field,
                                    char *err, size_t errlen) {
  if (m == NULL)
    return ES_OK;
  size_t n = strlen(m);
  if (n == 0 || n > ES__MODEL_MAX) {
    snprintf(err, errlen, "%s must be 1..%d bytes, not %zu", field,
             ES__MODEL_MAX, n);
    return ES_EINVAL;
  }
  return check_text(m, field, err, errlen);
}

/* A vector: of the store's dimension, every value finite, and for the
 * cosine metric not of zero length (its distance to anything is NaN). */
static inline es_status check_vector(const float *v, size_t n, int dim,
                                     es_metric metric, const char *field,
                                     char *err, size_t errlen) {
  if ((long)n != dim) {
    snprintf(err, errlen, "%s has %zu values; the store's dimension is %d",
             field, n, dim);
    return ES_EDIM;
  }
  long bad = es__vector_first_nonfinite(v, n);
  if (bad >= 0) {
    snprintf(err, errlen, "%s[%ld] is not a finite number", field, bad);
    return ES_EINVAL;
  }
  if (metric == ES_METRIC_COSINE && es__vector_zero_norm(v, n)) {
    snprintf(err, errlen, "%s has zero length (all values are 0, or too small "
             "for float32 to square): the cosine distance is undefined for it",
             field);
    return ES_EINVAL;
  }
  return ES_OK;
}

/* Metadata: NULL or one JSON object. */
static inline es_status check_metadata(const char *m, const char *field,
                                       char *err, size_t errlen) {
  if (m == NULL)
    return ES_OK;
  if (!es__json_check_object(m, strlen(m), field, err, errlen))
    return ES_EINVAL;
  return ES_OK;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Chunk ids must be unique within the document. */
static es_status check_chunk_ids_unique(const es_doc *doc, char *err,
                                        size_t errlen) {
  if (doc->n_chunks < 2)
    return ES_OK;
  const char **ids = malloc(doc->n_chunks * sizeof *ids);
  if (ids == NULL) {
    snprintf(err, errlen, "out of memory");
    return ES_ENOMEM;
  }
  for (size_t i = 0; i < doc->n_chunks; i++)
    ids[i] = doc->chunks[i].id;
  qsort(ids, doc->n_chunks, sizeof *ids, cmp_str);
  es_status rc = ES_OK;
  for (size_t i = 1; i < doc->n_chunks; i++) {
    if (strcmp(ids[i - 1], ids[i]) == 0) {
      snprintf(err, errlen, "chunk id \"%.200s\" appears twice in the document",
               ids[i]);
      rc = ES_EINVAL;
      break;
    }
  }
  free(ids);
  return rc;
}

/* Checks every field of doc against a store of dimension dim. */
es_status es__doc_check(const es_doc *doc, int dim, es_metric metric, char *err,
                        size_t errlen) {
  es_status rc;
  char field[64];

  if ((rc = check_id(doc->id, "id", err, errlen)) != ES_OK ||
      (rc = check_text(doc->text, "text", err, errlen)) != ES_OK)
    return rc;
  if (doc->embedding == NULL) {
    snprintf(err, errlen, "embedding is missing%s",
             doc->text && doc->text[0]
                 ? " (a store with an embedding provider, --embed-url, makes "
                   "one from the text)"
                 : " and there is no text to make one from");
    return ES_EINVAL;
  }
  if ((rc = check_model(doc->model, "model", err, errlen)) != ES_OK)
    return rc;
  if ((rc = check_vector(doc->embedding, doc->dim, dim, metric, "embedding",
                         err, errlen)) != ES_OK ||
      (rc = check_metadata(doc->metadata_json, "metadata", err, errlen)) != ES_OK)
    return rc;
  if (doc->source_id != NULL &&
      (rc = check_id(doc->source_id, "source_id", err, errlen)) != ES_OK)
    return rc;
  if (doc->n_chunks > 0 && doc->chunks == NULL) {
    snprintf(err, errlen, "chunks is NULL but n_chunks is %zu", doc->n_chunks);
    return ES_EINVAL;
  }
  for (size_t i = 0; i < doc->n_chunks; i++) {
    const es_chunk *c = &doc->chunks[i];
    snprintf(field, sizeof field, "chunks[%zu].id", i);
    if ((rc = check_id(c->id, field, err, errlen)) != ES_OK)
      return rc;
    snprintf(field, sizeof field, "chunks[%zu].text", i);
    if ((rc = check_text(c->text, field, err, errlen)) != ES_OK)
      return rc;
    snprintf(field, sizeof field, "chunks[%zu].embedding", i);
    if (c->embedding != NULL &&
        (rc = check_vector(c->embedding, c->dim, dim, metric, field, err,
                           errlen)) != ES_OK)
      return rc;
    snprintf(field, sizeof field, "chunks[%zu].metadata", i);
    if ((rc = check_metadata(c->metadata_json, field, err, errlen)) != ES_OK)
      return rc;
    snprintf(field, sizeof field, "chunks[%zu].model", i);
    if ((rc = check_model(c->model, field, err, errlen)) != ES_OK)
      return rc;
  }
  return check_chunk_ids_unique(doc, err, errlen);
}
