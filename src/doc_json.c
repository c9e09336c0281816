/* doc_json.c - one document of the ingest format, parsed from JSON.
 *
 *   {"id","text","embedding":[...],"metadata":{...},"source_id","model",
 *    "chunks":[{"id","text","embedding":[...]|null,"metadata":{...},
 *               "model"}]}
 *
 * Vectors go straight into float arrays and metadata is kept as the exact
 * bytes the user sent (jsonb normalises it on the server), so nothing is
 * reformatted on the way.  Unknown fields are refused: a misspelt
 * "metdata" must not silently drop the user's metadata. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "json.h"

/* pgvector's own limit on a vector's dimension. */
#define MAX_VALUES 16000

typedef struct owned_chunk {
  char *id, *text, *metadata, *model;
  float *embedding;
} owned_chunk;

struct es_doc_json {
  es_doc doc;
  char *id, *text, *metadata, *source_id, *model;
  float *embedding;
  es_chunk *chunks;
  owned_chunk *owned;
  size_t cap_chunks;
};

void es_doc_json_free(es_doc_json *d) {
  if (d == NULL)
    return;
  free(d->id);
  free(d->text);
  free(d->metadata);
  free(d->source_id);
  free(d->model);
  free(d->embedding);
  for (size_t i = 0; i < d->doc.n_chunks; i++) {
    free(d->owned[i].id);
    free(d->owned[i].text);
    free(d->owned[i].metadata);
    free(d->owned[i].model);
    free(d->owned[i].embedding);
  }
  free(d->chunks);
  free(d->owned);
  free(d);
}

const es_doc *es_doc_json_doc(const es_doc_json *d) { return &d->doc; }

/* A string field: refuses NUL bytes, which PostgreSQL text cannot hold. */
static bool read_text(es__json *j, char **dst, const char *ctx) {
  es__buf b = {0};
  if (!es__json_string(j, &b, ctx)) {
    es__buf_free(&b);
    return false;
  }
  if (memchr(b.data, '\0', b.len) != NULL) {
    es__buf_free(&b);
    return es__json_error(j, "%s: contains a NUL byte (\\u0000), which "
                          "PostgreSQL text cannot store", ctx);
  }
  *dst = b.data;
  return true;
}

/* A string or null. */
static bool read_opt_text(es__json *j, char **dst, const char *ctx) {
  if (es__json_literal(j, "null"))
    return true;
  return read_text(j, dst, ctx);
}

/* An array of numbers into a new float array; *oom (may be NULL) says
 * whether a failure was out of memory. */
static bool read_vector(es__json *j, float **dst, size_t *dim, const char *ctx,
                        bool *oom) {
  size_t n = 0, cap = 0;
  float *v = NULL;
  if (!es__json_eat(j, '['))
    return es__json_error(j, "%s: expected an array of numbers", ctx);
  if (!es__json_eat(j, ']')) {
    for (;;) {
      if (n == cap) {
        if (cap == MAX_VALUES) {
          free(v);
          return es__json_error(j, "%s: more than %d values", ctx, MAX_VALUES);
        }
        cap = cap ? cap * 2 : 256;
        if (cap > MAX_VALUES)
          cap = MAX_VALUES;
        float *g = realloc(v, cap * sizeof *v);
        if (g == NULL) {
          free(v);
          if (oom)
            *oom = true;
          return es__json_oom(j, ctx);
        }
        v = g;
      }
      if (!es__json_float_at(j, &v[n], ctx, n)) {
        free(v);
        return false;
      }
      n++;
      if (es__json_eat(j, ','))
        continue;
      if (es__json_eat(j, ']'))
        break;
      free(v);
      return es__json_error(j, "%s: expected ',' or ']'", ctx);
    }
  }
  *dst = v ? v : malloc(sizeof(float));
  *dim = n;
  if (*dst == NULL && oom)
    *oom = true;
  return *dst != NULL || es__json_oom(j, ctx);
}

/* A JSON object (or null), kept as its exact source bytes. */
static bool read_metadata(es__json *j, char **dst, const char *ctx) {
  if (es__json_literal(j, "null"))
    return true;
  int c = es__json_peek(j);
  if (c != '{')
    return es__json_error(j, "%s: must be a JSON object, not %s", ctx,
                          c == '[' ? "an array" : c == '"' ? "a string"
                          : c == -1 ? "nothing" : "a scalar");
  const char *from = j->p;
  if (!es__json_skip(j, 1, ctx))
    return false;
  size_t n = (size_t)(j->p - from);
  *dst = malloc(n + 1);
  if (*dst == NULL)
    return es__json_oom(j, ctx);
  memcpy(*dst, from, n);
  (*dst)[n] = '\0';
  return true;
}

/* Reads one member key into key (a short buffer); false on error. */
static bool read_key(es__json *j, es__buf *key, const char *ctx) {
  if (!es__json_string(j, key, ctx))
    return false;
  if (!es__json_eat(j, ':'))
    return es__json_error(j, "%s: expected ':' after \"%s\"", ctx, key->data);
  return true;
}

static bool read_chunk(es__json *j, es_doc_json *d, size_t idx) {
  owned_chunk *o = &d->owned[idx];
  es_chunk *c = &d->chunks[idx];
  char ctx[64], fctx[80];
  unsigned seen = 0;
  es__buf key = {0};
  bool ok = false;

  snprintf(ctx, sizeof ctx, "chunks[%zu]", idx);
  if (!es__json_eat(j, '{')) {
    es__json_error(j, "%s: expected an object", ctx);
    goto done;
  }
  if (!es__json_eat(j, '}')) {
    for (;;) {
      if (!read_key(j, &key, ctx))
        goto done;
      static const char *const names[] = {"id", "text", "embedding", "metadata",
                                          "model"};
      int f = -1;
      for (int i = 0; i < 5; i++)
        if (strcmp(key.data, names[i]) == 0 && key.len == strlen(names[i]))
          f = i;
      if (f < 0) {
        es__json_error(j, "%s: unknown field \"%.40s\" (known: id, text, "
                       "embedding, metadata, model)", ctx, key.data);
        goto done;
      }
      if (seen & (1u << f)) {
        es__json_error(j, "%s: field \"%s\" appears twice", ctx, names[f]);
        goto done;
      }
      seen |= 1u << f;
      snprintf(fctx, sizeof fctx, "%s.%s", ctx, names[f]);
      bool r = true;
      switch (f) {
      case 0: r = read_text(j, &o->id, fctx); break;
      case 1: r = read_opt_text(j, &o->text, fctx); break;
      case 2:
        if (!es__json_literal(j, "null"))
          r = read_vector(j, &o->embedding, &c->dim, fctx, NULL);
        break;
      case 3: r = read_metadata(j, &o->metadata, fctx); break;
      case 4: r = read_opt_text(j, &o->model, fctx); break;
      }
      if (!r)
        goto done;
      if (es__json_eat(j, ','))
        continue;
      if (es__json_eat(j, '}'))
        break;
      es__json_error(j, "%s: expected ',' or '}'", ctx);
      goto done;
    }
  }
  c->id = o->id;
  c->text = o->text;
  c->embedding = o->embedding;
  c->metadata_json = o->metadata;
  c->model = o->model;
  ok = true;
done:
  es__buf_free(&key);
  return ok;
}

static bool read_chunks(es__json *j, es_doc_json *d) {
  if (es__json_literal(j, "null"))
    return true; /* same as no "chunks": the stored chunks are kept */
  if (!es__json_eat(j, '['))
    return es__json_error(j, "chunks: expected an array of objects");
  d->doc.has_chunks = 1;
  if (es__json_eat(j, ']'))
    return true;
  for (;;) {
    if (d->doc.n_chunks == d->cap_chunks) {
      size_t cap = d->cap_chunks ? d->cap_chunks * 2 : 8;
      es_chunk *c = realloc(d->chunks, cap * sizeof *c);
      if (c == NULL)
        return es__json_oom(j, "chunks");
      d->chunks = c;
      owned_chunk *o = realloc(d->owned, cap * sizeof *o);
      if (o == NULL)
        return es__json_oom(j, "chunks");
      d->owned = o;
      d->cap_chunks = cap;
    }
    size_t idx = d->doc.n_chunks++;
    memset(&d->chunks[idx], 0, sizeof d->chunks[idx]);
    memset(&d->owned[idx], 0, sizeof d->owned[idx]);
    d->doc.chunks = d->chunks;
    if (!read_chunk(j, d, idx))
      return false;
    if (es__json_eat(j, ','))
      continue;
    if (es__json_eat(j, ']'))
      return true;
    return es__json_error(j, "chunks: expected ',' or ']'");
  }
}

es_status es_doc_json_parse(const char *json, size_t len, es_doc_json **out,
                            char *err, size_t errlen) {
  static const char *const names[] = {"id",       "text",      "embedding",
                                      "metadata", "source_id", "chunks",
                                      "model"};
  es__json j;
  es__buf key = {0};
  unsigned seen = 0;
  es_doc_json *d;
  char fallback[8];

  if (err == NULL || errlen == 0) {
    err = fallback;
    errlen = sizeof fallback;
  }
  *out = NULL;
  es__json_init(&j, json, len, err, errlen);
  d = calloc(1, sizeof *d);
  if (d == NULL) {
    snprintf(err, errlen, "out of memory");
    return ES_ENOMEM;
  }
  if (es__json_peek(&j) != '{') {
    es__json_error(&j, es__json_peek(&j) == -1 ? "empty document"
                                               : "a document must be a JSON object");
    goto fail;
  }
  j.p++;
  if (!es__json_eat(&j, '}')) {
    for (;;) {
      if (!read_key(&j, &key, "document"))
        goto fail;
      int f = -1;
      for (int i = 0; i < 7; i++)
        if (strcmp(key.data, names[i]) == 0 && key.len == strlen(names[i]))
          f = i;
      if (f < 0) {
        es__json_error(&j, "unknown field \"%.40s\" (known: id, text, "
                       "embedding, metadata, source_id, chunks, model)", key.data);
        goto fail;
      }
      if (seen & (1u << f)) {
        es__json_error(&j, "field \"%s\" appears twice", names[f]);
        goto fail;
      }
      seen |= 1u << f;
      bool r = true;
      switch (f) {
      case 0: r = read_text(&j, &d->id, "id"); break;
      case 1: r = read_opt_text(&j, &d->text, "text"); break;
      case 2:
        if (!es__json_literal(&j, "null"))
          r = read_vector(&j, &d->embedding, &d->doc.dim, "embedding", NULL);
        break;
      case 3: r = read_metadata(&j, &d->metadata, "metadata"); break;
      case 4: r = read_opt_text(&j, &d->source_id, "source_id"); break;
      case 5: r = read_chunks(&j, d); break;
      case 6: r = read_opt_text(&j, &d->model, "model"); break;
      }
      if (!r)
        goto fail;
      if (es__json_eat(&j, ','))
        continue;
      if (es__json_eat(&j, '}'))
        break;
      es__json_error(&j, "expected ',' or '}' after a field");
      goto fail;
    }
  }
  if (es__json_peek(&j) != -1) {
    es__json_error(&j, "trailing characters after the document");
    goto fail;
  }
  es__buf_free(&key);
  d->doc.id = d->id;
  d->doc.text = d->text;
  d->doc.embedding = d->embedding;
  d->doc.metadata_json = d->metadata;
  d->doc.source_id = d->source_id;
  d->doc.model = d->model;
  d->doc.chunks = d->chunks;
  *out = d;
  return ES_OK;
fail:
  es__buf_free(&key);
  if (err[0] == '\0')
    snprintf(err, errlen, "invalid document");
  es_doc_json_free(d);
  return j.oom ? ES_ENOMEM : ES_EINVAL;
}

es_status es_doc_json_set_defaults(es_doc_json *d, const char *source_id,
                                   const char *workspace) {
  if (d == NULL)
    return ES_EINVAL;
  if (source_id != NULL && d->source_id == NULL) {
    d->source_id = strdup(source_id);
    if (d->source_id == NULL)
      return ES_ENOMEM;
    d->doc.source_id = d->source_id;
  }
  if (workspace == NULL)
    return ES_OK;
  const char *m = d->metadata ? d->metadata : "{}";
  size_t mlen = strlen(m);
  if (es__json_object_has_key(m, mlen, "workspace"))
    return ES_OK;
  /* Insert "workspace":W right after the object's opening brace. */
  es__buf b = {0};
  const char *brace = strchr(m, '{');
  const char *rest = brace + 1;
  es__json j;
  char err[8];
  es__json_init(&j, rest, strlen(rest), err, sizeof err);
  bool empty = es__json_peek(&j) == '}';
  if (!es__buf_append(&b, m, (size_t)(rest - m)) ||
      !es__buf_append(&b, "\"workspace\":", 12) ||
      !es__json_append_string(&b, workspace, strlen(workspace)) ||
      (!empty && !es__buf_append(&b, ",", 1)) ||
      !es__buf_append(&b, rest, strlen(rest))) {
    es__buf_free(&b);
    return ES_ENOMEM;
  }
  free(d->metadata);
  d->metadata = b.data;
  d->doc.metadata_json = d->metadata;
  return ES_OK;
}

size_t es_doc_json_find_id(const char *json, size_t len, char *id, size_t cap) {
  es__json j;
  char err[8];
  es__buf key = {0}, val = {0};
  size_t found = 0;
  if (cap == 0)
    return 0;
  id[0] = '\0';
  es__json_init(&j, json, len, err, sizeof err);
  if (!es__json_eat(&j, '{'))
    return 0;
  while (es__json_string(&j, &key, "key") && es__json_eat(&j, ':')) {
    if (key.len == 2 && memcmp(key.data, "id", 2) == 0) {
      if (es__json_string(&j, &val, "id") && val.len > 0 && val.len < cap &&
          memchr(val.data, '\0', val.len) == NULL) {
        memcpy(id, val.data, val.len + 1);
        found = val.len;
      }
      break;
    }
    if (!es__json_skip(&j, 1, "value") || !es__json_eat(&j, ','))
      break;
  }
  es__buf_free(&key);
  es__buf_free(&val);
  return found;
}

es_status es_vector_parse_json(const char *json, size_t len, const char *name,
                               float **vector, size_t *dim, char *err,
                               size_t errlen) {
  es__json j;
  char fallback[8];
  bool oom = false;
  float *v = NULL;
  size_t n = 0;
  if (err == NULL || errlen == 0) {
    err = fallback;
    errlen = sizeof fallback;
  }
  if (name == NULL)
    name = "vector";
  *vector = NULL;
  *dim = 0;
  es__json_init(&j, json ? json : "", json ? len : 0, err, errlen);
  if (!read_vector(&j, &v, &n, name, &oom))
    return oom ? ES_ENOMEM : ES_EINVAL;
  if (n == 0)
    es__json_error(&j, "%s: the vector is empty", name);
  else if (es__json_peek(&j) != -1)
    es__json_error(&j, "%s: trailing characters after the array", name);
  if (err[0] != '\0') {
    free(v);
    return ES_EINVAL;
  }
  *vector = v;
  *dim = n;
  return ES_OK;
}

void es_vector_free(float *vector) { free(vector); }
