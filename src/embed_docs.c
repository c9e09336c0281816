/* embed_docs.c - documents and chunks that arrive with text but without a
 * vector, embedded by the store's provider before they are validated and
 * written (es_batch_add, es_upsert).  The caller's documents are const:
 * the embedded ones are copies that point at vectors owned here. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static bool wants(const char *text, const float *embedding) {
  return embedding == NULL && text != NULL && text[0] != '\0';
}

bool es__docs_need_embedding(const es_doc *docs, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (wants(docs[i].text, docs[i].embedding))
      return true;
    for (size_t k = 0; docs[i].has_chunks && docs[i].chunks && k < docs[i].n_chunks; k++)
      if (wants(docs[i].chunks[k].text, docs[i].chunks[k].embedding))
        return true;
  }
  return false;
}

void es__embedded_free(es__embedded *e) {
  if (e->errs)
    for (size_t i = 0; i < e->n; i++)
      free(e->errs[i]);
  free(e->errs);
  free(e->st);
  free(e->docs);
  free(e->chunks);
  free(e->vectors);
  memset(e, 0, sizeof *e);
}

/* A text is valid UTF-8 without NUL here (es_doc strings are C strings);
 * one that is not is left for validation to name. */
static bool usable(const char *t) {
  return es__utf8_invalid_at(t, strlen(t)) < 0;
}

es_status es__docs_embed(es_store *s, const es_doc *docs, size_t n, size_t dim,
                         es__embedded *e) {
  memset(e, 0, sizeof *e);
  e->n = n;
  size_t n_texts = 0, n_chunks = 0;
  for (size_t i = 0; i < n; i++) {
    const es_doc *d = &docs[i];
    n_texts += wants(d->text, d->embedding) && usable(d->text);
    if (d->chunks && d->has_chunks) /* without has_chunks they are not written */
      for (size_t k = 0; k < d->n_chunks; k++) {
        n_chunks++;
        n_texts += wants(d->chunks[k].text, d->chunks[k].embedding) &&
                   usable(d->chunks[k].text);
      }
  }
  const char **texts = malloc((n_texts ? n_texts : 1) * sizeof *texts);
  char **terrs = calloc(n_texts ? n_texts : 1, sizeof *terrs);
  es_status *tst = calloc(n_texts ? n_texts : 1, sizeof *tst);
  e->docs = malloc((n ? n : 1) * sizeof *e->docs);
  e->chunks = malloc((n_chunks ? n_chunks : 1) * sizeof *e->chunks);
  e->vectors = malloc((n_texts ? n_texts : 1) * dim * sizeof *e->vectors);
  e->errs = calloc(n ? n : 1, sizeof *e->errs);
  e->st = calloc(n ? n : 1, sizeof *e->st);
  es_status rc = ES_OK;
  if (!texts || !terrs || !tst || !e->docs || !e->chunks || !e->vectors ||
      !e->errs || !e->st) {
    rc = ES_ENOMEM;
    goto done;
  }
  /* The copies, and the texts to send in document order. */
  size_t t = 0, c = 0;
  for (size_t i = 0; i < n; i++) {
    e->docs[i] = docs[i];
    const es_doc *d = &docs[i];
    if (wants(d->text, d->embedding) && usable(d->text))
      texts[t++] = d->text;
    if (d->chunks && d->has_chunks) {
      memcpy(e->chunks + c, d->chunks, d->n_chunks * sizeof *d->chunks);
      e->docs[i].chunks = e->chunks + c;
      for (size_t k = 0; k < d->n_chunks; k++)
        if (wants(d->chunks[k].text, d->chunks[k].embedding) &&
            usable(d->chunks[k].text))
          texts[t++] = d->chunks[k].text;
      c += d->n_chunks;
    }
  }
  rc = es__embed_texts(s->embedder, texts, n_texts, dim, e->vectors, terrs, tst);
  if (rc == ES_ENOMEM)
    goto done;
  rc = ES_OK;
  /* Each vector to its row; a document fails with its first text that
   * could not be embedded. */
  const char *model = es__embedder_model(s->embedder);
  t = 0;
  for (size_t i = 0; i < n; i++) {
    es_doc *d = &e->docs[i];
    char field[64] = "";
    size_t bad = SIZE_MAX;
    if (wants(d->text, d->embedding) && usable(d->text)) {
      if (tst[t] == ES_OK) {
        d->embedding = e->vectors + t * dim;
        d->dim = dim;
        d->model = model;
      } else {
        bad = t;
        strcpy(field, "text");
      }
      t++;
    }
    es_chunk *ch = d->has_chunks ? (es_chunk *)d->chunks : NULL;
    for (size_t k = 0; ch && k < d->n_chunks; k++) {
      if (!(wants(ch[k].text, ch[k].embedding) && usable(ch[k].text)))
        continue;
      if (tst[t] == ES_OK) {
        ch[k].embedding = e->vectors + t * dim;
        ch[k].dim = dim;
        ch[k].model = model;
      } else if (bad == SIZE_MAX) {
        bad = t;
        snprintf(field, sizeof field, "chunks[%zu].text", k);
      }
      t++;
    }
    if (bad != SIZE_MAX) {
      size_t len = strlen(field) + strlen(terrs[bad] ? terrs[bad] : "") + 32;
      e->errs[i] = malloc(len);
      if (e->errs[i] == NULL) {
        rc = ES_ENOMEM;
        goto done;
      }
      snprintf(e->errs[i], len, "%s not embedded: %s", field,
               terrs[bad] ? terrs[bad] : "unknown error");
      e->st[i] = tst[bad];
    }
  }
done:
  if (terrs)
    for (size_t i = 0; i < n_texts; i++)
      free(terrs[i]);
  free(terrs);
  free(tst);
  free(texts);
  if (rc != ES_OK)
    es__embedded_free(e);
  return rc;
}
