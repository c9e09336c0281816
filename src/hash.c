/* hash.c - content hashes that let a re-ingest skip unchanged documents.
 *
 * Two BLAKE2b-128 hashes per document: one over its own fields and one over
 * its chunk set, so a document sent without "chunks" can still be compared.
 * Every variable-length field is length-prefixed or self-delimiting, so no
 * two different documents feed the same bytes.  Metadata is hashed in the
 * form jsonb prints it (json_canon.c): key order, whitespace, escapes and
 * the spelling of numbers that jsonb does not keep do not count as a
 * change, so metadata read back from the store (export, then ingest)
 * hashes as it did when it went in.  Any change jsonb keeps does count.
 * (Version 1 hashed the text minified, key order included: a store
 * written then rewrites such documents once, on their next re-ingest.) */
#include <string.h>

#include "blake2b.h"
#include "internal.h"
#include "json.h"

static void feed_u64(es__blake2b *h, uint64_t v) {
  uint8_t b[8];
  for (int i = 0; i < 8; i++)
    b[i] = (uint8_t)(v >> (8 * i));
  es__blake2b_update(h, b, 8);
}

static void feed_str(es__blake2b *h, const char *s) {
  size_t n = s ? strlen(s) : 0;
  feed_u64(h, n);
  es__blake2b_update(h, s ? s : "", n);
}

/* A vector as little-endian IEEE bits, so hashes agree across machines. */
static void feed_vector(es__blake2b *h, const float *v, size_t dim) {
  uint8_t buf[256];
  size_t fill = 0;
  feed_u64(h, v ? dim : UINT64_MAX);
  for (size_t i = 0; v && i < dim; i++) {
    uint32_t bits;
    memcpy(&bits, &v[i], 4);
    for (int k = 0; k < 4; k++)
      buf[fill++] = (uint8_t)(bits >> (8 * k));
    if (fill == sizeof buf) {
      es__blake2b_update(h, buf, fill);
      fill = 0;
    }
  }
  es__blake2b_update(h, buf, fill);
}

/* JSON with insignificant whitespace dropped, then a NUL (which valid JSON
 * text never contains) as terminator.  NULL stands for {}. */
static void feed_json_minified(es__blake2b *h, const char *json) {
  uint8_t buf[256];
  size_t fill = 0;
  int in_string = 0, escaped = 0;
  if (json == NULL)
    json = "{}";
  for (const char *p = json; *p; p++) {
    char c = *p;
    if (in_string) {
      if (escaped)
        escaped = 0;
      else if (c == '\\')
        escaped = 1;
      else if (c == '"')
        in_string = 0;
    } else if (c == '"') {
      in_string = 1;
    } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      continue;
    }
    buf[fill++] = (uint8_t)c;
    if (fill == sizeof buf) {
      es__blake2b_update(h, buf, fill);
      fill = 0;
    }
  }
  buf[fill++] = 0;
  es__blake2b_update(h, buf, fill);
}

/* Metadata (NULL stands for {}) in jsonb's form, then a NUL; JSON it
 * cannot put in that form (or no memory for it) minified instead, which
 * at worst makes an unchanged document look changed. */
static void feed_json(es__blake2b *h, const char *json) {
  if (json == NULL || strcmp(json, "{}") == 0) {
    es__blake2b_update(h, "{}", 3); /* with its NUL */
    return;
  }
  es__buf c = {0};
  if (es__json_canonical(json, strlen(json), &c))
    es__blake2b_update(h, c.data, c.len + 1);
  else
    feed_json_minified(h, json);
  es__buf_free(&c);
}

/* Hash of the document's own fields (not its id, not its chunks). */
void es__doc_content_hash(const es_doc *doc, uint8_t out[ES__HASH_BYTES]) {
  es__blake2b h;
  es__blake2b_init(&h, ES__HASH_BYTES);
  es__blake2b_update(&h, "esdoc2", 6);
  feed_str(&h, doc->text);
  feed_u64(&h, doc->source_id != NULL);
  feed_str(&h, doc->source_id);
  feed_vector(&h, doc->embedding, doc->dim);
  feed_json(&h, doc->metadata_json);
  if (doc->model != NULL) { /* absent before models were recorded: the
                               hashes of such documents stay as they were */
    es__blake2b_update(&h, "model", 6);
    feed_str(&h, doc->model);
  }
  es__blake2b_final(&h, out);
}

/* Hash of the document's chunk set, in order. */
void es__doc_chunks_hash(const es_doc *doc, uint8_t out[ES__HASH_BYTES]) {
  es__blake2b h;
  es__blake2b_init(&h, ES__HASH_BYTES);
  es__blake2b_update(&h, "eschunks2", 9);
  feed_u64(&h, doc->n_chunks);
  for (size_t i = 0; i < doc->n_chunks; i++) {
    const es_chunk *c = &doc->chunks[i];
    feed_str(&h, c->id);
    feed_str(&h, c->text);
    feed_vector(&h, c->embedding, c->dim);
    feed_json(&h, c->metadata_json);
    if (c->model != NULL) {
      es__blake2b_update(&h, "model", 6);
      feed_str(&h, c->model);
    }
  }
  es__blake2b_final(&h, out);
}
