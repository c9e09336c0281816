/* batch_prepare.c - a batch session's input, before anything is sent:
 * validation, content hashes, duplicate ids folded, chunk ids claimed by
 * two documents of the input (see batch_int.h). */
#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch_int.h"

/* Validates every document before anything is sent. */
size_t es__batch_validate(es_batch *b, const es_doc *docs, size_t n,
                          const size_t *positions, es__item *it) {
  assert(b != NULL && (docs != NULL || n == 0) && it != NULL);
  size_t kept = 0;
  char err[512];
  for (size_t i = 0; i < n; i++) {
    size_t pos = positions ? positions[i] : b->next_position + i;
    es_status rc = es__doc_check(&docs[i], b->dim, b->metric, err, sizeof err);
    if (rc == ES_ENOMEM) {
      /* No fault of the document's: nothing of this call is written. */
      for (size_t k = 0; k < kept; k++)
        es__batch_fail_item(b, &it[k], ES_ENOMEM, "out of memory");
      for (size_t k = i; k < n; k++)
        es__batch_add_failure(b, es__batch_usable_id(&docs[k]),
                              positions ? positions[k] : b->next_position + k,
                              ES_ENOMEM, "out of memory");
      b->oom = true;
      kept = 0;
      break;
    }
    if (rc != ES_OK) {
      es__batch_add_failure(b, es__batch_usable_id(&docs[i]), pos, rc, err);
      continue;
    }
    it[kept].doc = &docs[i];
    it[kept].position = pos;
    kept++;
  }
  b->next_position += n;
  return kept;
}

/* Computes the item's content hashes once, when first needed: on the
 * first-load path while its row is encoded into the COPY stream, so that
 * hashing overlaps the server's work on the rows sent before (unless the
 * prehash thread below did it during the previous batch). */
void es__batch_hash_item(es__item *x) {
  if (x->hashed)
    return;
  es__doc_content_hash(x->doc, x->content_hash);
  if (x->doc->has_chunks)
    es__doc_chunks_hash(x->doc, x->chunks_hash);
  x->hashed = true;
}

/* The prehash thread: the first-load path would otherwise hash a batch's
 * documents while the server waits for their rows. */
static void *prehash_run(void *arg) {
  es__prehash *p = arg;
  for (size_t i = 0; i < p->n; i++)
    es__batch_hash_item(&p->it[i]);
  return NULL;
}

/* Starts hashing it[0..n) on a thread, when one can be started. */
void es__prehash_start(es__prehash *p, es__item *it, size_t n) {
  *p = (es__prehash){.it = it, .n = n};
  p->started = n > 0 && es__thread_start(&p->thread, prehash_run, p) == 0;
}

/* Joins the prehash thread, if one was started. */
void es__prehash_wait(es__prehash *p) {
  if (p->started)
    pthread_join(p->thread, NULL);
  p->started = false;
}

/* An id and the index of the item it came from, for sorting. */
typedef struct key {
  const char *id;
  size_t index;
} key;

/* Orders keys by id, then by index (the input's order). */
static int cmp_key(const void *a, const void *b) {
  const key *x = a, *y = b;
  int c = strcmp(x->id, y->id);
  if (c != 0)
    return c;
  return x->index < y->index ? -1 : x->index > y->index;
}

/* Folds duplicate ids: sorted by id, each occurrence but the last is
 * folded into the next. */
bool es__batch_fold_duplicates(es__item *it, size_t n, size_t *count) {
  assert(it != NULL || n == 0);
  size_t folded = 0;
  *count = 0;
  for (size_t i = 0; i < n; i++)
    it[i].prev = -1;
  if (n < 2)
    return true;
  key *keys = malloc(n * sizeof *keys);
  if (keys == NULL)
    return false;
  for (size_t i = 0; i < n; i++)
    keys[i] = (key){it[i].doc->id, i};
  qsort(keys, n, sizeof *keys, cmp_key);
  for (size_t i = 0; i + 1 < n; i++)
    if (strcmp(keys[i].id, keys[i + 1].id) == 0) {
      it[keys[i].index].folded = true;
      it[keys[i + 1].index].prev = (long)keys[i].index;
      folded++;
    }
  free(keys);
  *count = folded;
  return true;
}

/* Fails the later claims of a chunk id within it[0..n). */
void es__batch_check_chunk_claims(es_batch *b, es__item *it, size_t n) {
  size_t total = 0;
  for (size_t i = 0; i < n; i++)
    total += it[i].doc->has_chunks ? it[i].doc->n_chunks : 0;
  if (total < 2)
    return;
  key *keys = malloc(total * sizeof *keys);
  if (keys == NULL)
    return;
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    for (size_t c = 0; it[i].doc->has_chunks && c < it[i].doc->n_chunks; c++)
      keys[k++] = (key){it[i].doc->chunks[c].id, i};
  assert(k == total);
  qsort(keys, total, sizeof *keys, cmp_key);
  for (size_t i = 0; i + 1 < total; i++) {
    if (strcmp(keys[i].id, keys[i + 1].id) != 0 ||
        keys[i].index == keys[i + 1].index)
      continue;
    es__item *later = &it[keys[i + 1].index];
    if (later->failed)
      continue;
    char msg[1300];
    snprintf(msg, sizeof msg, "chunk id \"%s\" is also used by document "
             "\"%s\" earlier in the input", keys[i].id, it[keys[i].index].doc->id);
    es__batch_fail_item(b, later, ES_ECONFLICT, msg);
  }
  free(keys);
}

/* Partitions it[0..n) into the items to write and the failed ones. */
size_t es__batch_partition_ready(es__item *it, size_t n, es__item *tmp) {
  size_t w = 0, f = 0;
  for (size_t i = 0; i < n; i++)
    if (it[i].failed)
      tmp[f++] = it[i];
    else
      it[w++] = it[i];
  memcpy(it + w, tmp, f * sizeof *it);
  return w;
}
