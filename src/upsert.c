/* upsert.c - one document (and its chunk set) in one transaction.
 *
 * The document's row is locked first (SELECT ... FOR UPDATE), its content
 * hashes compared, and nothing is written when they match: an unchanged
 * document keeps its updated_at.  A document sent with chunks replaces its
 * whole chunk set; chunks missing from the new set are deleted in the same
 * transaction. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "internal.h"
#include "json.h"

/* The id of chunk i of a chunk array (for es__text_array). */
static const char *chunk_id(const void *chunks, size_t i) {
  return ((const es_chunk *)chunks)[i].id;
}

/* Checks a document against the store's shape, naming it in errors. */
es_status es_doc_validate(es_store *s, const es_doc *doc) {
  if (s == NULL || doc == NULL)
    return s ? es__fail(s, ES_EINVAL, "doc is NULL") : ES_EINVAL;
  es__clear_err(s);
  int dim;
  es_metric metric;
  es_status rc = es_store_shape(s, &dim, &metric);
  if (rc != ES_OK)
    return rc;
  char err[512];
  rc = es__doc_check(doc, dim, metric, err, sizeof err);
  if (rc != ES_OK) {
    if (doc->id && doc->id[0] && rc != ES_ENOMEM &&
        strlen(doc->id) <= ES_MAX_ID_BYTES &&
        es__utf8_invalid_at(doc->id, strlen(doc->id)) < 0)
      return es__fail(s, rc, "document \"%s\": %s", doc->id, err);
    return es__fail(s, rc, "document: %s", err);
  }
  return ES_OK;
}

typedef struct upsert_ctx {
  const es_doc *doc;
  uint8_t content_hash[ES__HASH_BYTES];
  uint8_t chunks_hash[ES__HASH_BYTES];
  es_upsert_outcome outcome;
  char *old_source; /* the stored source, when this write moves the doc */
} upsert_ctx;

/* Fails with the name of the first chunk owned by another document. */
static es_status check_chunk_owners(es_store *s, es__conn *c, const es_doc *doc,
                                    const char *ids) {
  const char *params[2] = {ids, doc->id};
  PGresult *r = es__exec_stmt(c, ES__Q_CHUNK_OWNER, 2, params, NULL, NULL, 0);
  es_status rc = ES_OK;
  if (!es__res_ok(r))
    rc = es__fail_pg(s, c->pg, r, "cannot check chunk ownership");
  else if (PQntuples(r) > 0)
    rc = es__fail(s, ES_ECONFLICT,
                  "document \"%s\": chunk id \"%s\" belongs to document \"%s\"",
                  doc->id, PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
  PQclear(r);
  return rc;
}

/* Deletes the chunks not in the new set and writes the new set. */
static es_status write_chunks(es_store *s, es__conn *c, const es_doc *doc,
                              const char *ids) {
  const char *prune[2] = {doc->id, ids};
  PGresult *r = es__exec_stmt(c, ES__Q_CHUNKS_PRUNE, 2, prune, NULL, NULL, 0);
  es_status rc = ES_OK;
  if (!es__res_ok(r))
    rc = es__fail_pg(s, c->pg, r, "cannot delete stale chunks");
  PQclear(r);
  char *vec = NULL;
  for (size_t i = 0; rc == ES_OK && i < doc->n_chunks; i++) {
    const es_chunk *ch = &doc->chunks[i];
    char index[16];
    snprintf(index, sizeof index, "%zu", i);
    size_t vlen = ch->embedding ? es__vector_bin_size(ch->dim) : 0;
    if (ch->embedding) {
      char *g = realloc(vec, vlen);
      if (g == NULL) {
        rc = es__fail(s, ES_ENOMEM, "out of memory");
        break;
      }
      vec = g;
      es__vector_to_bin(ch->embedding, ch->dim, vec);
    }
    const char *v[6] = {ch->id, doc->id, index, ch->text ? ch->text : "",
                        ch->embedding ? vec : NULL,
                        ch->metadata_json ? ch->metadata_json : "{}"};
    int len[6] = {0, 0, 0, 0, (int)vlen, 0};
    int fmt[6] = {0, 0, 0, 0, 1, 0};
    r = es__exec_stmt(c, es__distributed(s, c) ? ES__Q_CHUNK_UPSERT_DIST
                                               : ES__Q_CHUNK_UPSERT,
                      6, v, len, fmt, 0);
    if (!es__res_ok(r))
      rc = es__fail_pg(s, c->pg, r, "cannot write a chunk");
    else if (strcmp(PQcmdTuples(r), "1") != 0)
      rc = es__fail(s, ES_ECONFLICT, "document \"%s\": chunk id \"%s\" "
                    "belongs to another document", doc->id, ch->id);
    PQclear(r);
  }
  free(vec);
  return rc;
}

/* Locks and reads the stored row of the document: *unchanged when its
 * hashes match; otherwise u->old_source is set when the write moves the
 * document out of its stored source. */
static es_status read_stored(es_store *s, es__conn *c, upsert_ctx *u,
                             bool *unchanged) {
  const es_doc *doc = u->doc;
  const char *key[1] = {doc->id};
  PGresult *r = es__exec_stmt(c, ES__Q_DOC_HASH, 1, key, NULL, NULL, 1);
  if (!es__res_ok(r)) {
    es_status rc = es__fail_pg(s, c->pg, r, "cannot read the stored document");
    PQclear(r);
    return rc;
  }
  *unchanged =
      PQntuples(r) == 1 && PQgetlength(r, 0, 0) == ES__HASH_BYTES &&
      memcmp(PQgetvalue(r, 0, 0), u->content_hash, ES__HASH_BYTES) == 0 &&
      (!doc->has_chunks ||
       (PQgetlength(r, 0, 1) == ES__HASH_BYTES &&
        memcmp(PQgetvalue(r, 0, 1), u->chunks_hash, ES__HASH_BYTES) == 0));
  free(u->old_source);
  u->old_source = NULL;
  if (!*unchanged && PQntuples(r) == 1 && !PQgetisnull(r, 0, 2) &&
      (doc->source_id == NULL ||
       (size_t)PQgetlength(r, 0, 2) != strlen(doc->source_id) ||
       memcmp(PQgetvalue(r, 0, 2), doc->source_id, strlen(doc->source_id)) != 0))
    u->old_source = strndup(PQgetvalue(r, 0, 2), (size_t)PQgetlength(r, 0, 2));
  PQclear(r);
  return ES_OK;
}

/* Writes the document's row; u->outcome says whether it was inserted. */
static es_status write_doc(es_store *s, es__conn *c, upsert_ctx *u) {
  const es_doc *doc = u->doc;
  size_t vlen = es__vector_bin_size(doc->dim);
  char *vec = malloc(vlen);
  if (vec == NULL)
    return es__fail(s, ES_ENOMEM, "out of memory");
  es__vector_to_bin(doc->embedding, doc->dim, vec);
  const char *v[8] = {doc->id,
                      doc->text ? doc->text : "",
                      vec,
                      doc->metadata_json ? doc->metadata_json : "{}",
                      doc->source_id,
                      (const char *)u->content_hash,
                      doc->has_chunks ? (const char *)u->chunks_hash : NULL,
                      doc->model};
  int len[8] = {0, 0, (int)vlen, 0, 0, ES__HASH_BYTES, ES__HASH_BYTES, 0};
  int fmt[8] = {0, 0, 1, 0, 0, 1, 1, 0};
  PGresult *r = es__exec_stmt(c, ES__Q_UPSERT_DOC, 8, v, len, fmt, 0);
  free(vec);
  es_status rc = ES_OK;
  if (!es__res_ok(r) || PQntuples(r) != 1)
    rc = es__fail_pg(s, c->pg, r, "cannot write the document");
  else
    u->outcome = PQgetvalue(r, 0, 0)[0] == 't' ? ES_UPSERT_INSERTED
                                               : ES_UPSERT_UPDATED;
  PQclear(r);
  return rc;
}

/* The upsert's transaction: the stored row locked and its hashes
 * compared; the document and its chunk set written unless unchanged. */
static es_status upsert_op(es_store *s, es__conn *c, void *arg) {
  upsert_ctx *u = arg;
  const es_doc *doc = u->doc;
  assert(doc != NULL && doc->id != NULL && doc->embedding != NULL);
  char *ids = NULL;
  bool unchanged = false;
  es_status rc = es__begin(s, c);
  if (rc != ES_OK)
    return rc;
  if ((rc = read_stored(s, c, u, &unchanged)) != ES_OK)
    goto done;
  if (unchanged) {
    u->outcome = ES_UPSERT_UNCHANGED;
    rc = es__commit(s, c);
    goto done;
  }
  if (doc->has_chunks) {
    ids = es__text_array(doc->chunks, doc->n_chunks, chunk_id);
    if (ids == NULL) {
      rc = es__fail(s, ES_ENOMEM, "out of memory");
      goto done;
    }
    if ((rc = check_chunk_owners(s, c, doc, ids)) != ES_OK)
      goto done;
  }
  if ((rc = write_doc(s, c, u)) != ES_OK)
    goto done;
  if (doc->has_chunks && (rc = write_chunks(s, c, doc, ids)) != ES_OK)
    goto done;
  rc = es__commit(s, c);
done:
  if (rc != ES_OK && es__last_err(s)->sqlstate[0]) {
    char prefix[ES_MAX_ID_BYTES + 16];
    snprintf(prefix, sizeof prefix, "document \"%s\"", doc->id);
    es__fail_wrap(s, rc, prefix);
  }
  free(ids);
  return rc;
}

/* Validates, hashes and writes one document; the cache learns of the
 * sources it changed once the write is committed. */
/* es_upsert through a batch session of one document: for a document the
 * provider embeds, or whose chunks name their model (the session writes
 * chunks.model; the statements here do not). */
static es_status upsert_batched(es_store *s, const es_doc *doc,
                                es_upsert_outcome *outcome) {
  es_batch_result *res = NULL;
  es_status rc = es_batch_upsert(s, doc, 1, NULL, &res);
  if (res && res->n_failures == 1) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", res->failures[0].error);
    rc = es__fail(s, res->failures[0].status, "%s", msg);
  } else if (rc == ES_OK && outcome && res) {
    *outcome = res->inserted ? ES_UPSERT_INSERTED
               : res->updated ? ES_UPSERT_UPDATED : ES_UPSERT_UNCHANGED;
  }
  es_batch_result_free(res);
  return rc;
}

static bool chunks_name_model(const es_doc *doc) {
  for (size_t i = 0; doc->chunks && i < doc->n_chunks; i++)
    if (doc->chunks[i].model)
      return true;
  return false;
}

es_status es_upsert(es_store *s, const es_doc *doc, es_upsert_outcome *outcome) {
  if (s != NULL && doc != NULL &&
      ((s->embedder && es__docs_need_embedding(doc, 1)) || chunks_name_model(doc)))
    return upsert_batched(s, doc, outcome);
  es_status rc = es_doc_validate(s, doc);
  if (rc != ES_OK)
    return rc;
  upsert_ctx u = {.doc = doc};
  es__doc_content_hash(doc, u.content_hash);
  if (doc->has_chunks)
    es__doc_chunks_hash(doc, u.chunks_hash);
  rc = es__run(s, "upsert", true, upsert_op, &u);
  if (rc == ES_OK && u.outcome != ES_UPSERT_UNCHANGED) { /* committed */
    es__cache_invalidate_source(s->cache, doc->source_id);
    if (u.old_source)
      es__cache_invalidate_source(s->cache, u.old_source);
  }
  free(u.old_source);
  if (rc == ES_OK && outcome)
    *outcome = u.outcome;
  return rc;
}
