/* corpus.c - the benchmarks' reproducible corpus. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "corpus.h"

#define TEXT_BYTES 200
#define CHUNK_TEXT_BYTES 120
#define SLOT 64 /* bytes for an id, source or metadata string */

static uint64_t rng = 0x9E3779B97F4A7C15ULL;

static uint64_t next_u64(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

/* A random unit vector (uniform on the sphere, via normal deviates). */
static void unit_vector(float *v, size_t dim) {
  double norm = 0;
  for (size_t i = 0; i < dim; i++) {
    double u1 = ((double)(next_u64() >> 11) + 1.0) / 9007199254740993.0;
    double u2 = (double)(next_u64() >> 11) / 9007199254740992.0;
    v[i] = (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
    norm += (double)v[i] * v[i];
  }
  norm = sqrt(norm);
  for (size_t i = 0; i < dim; i++)
    v[i] = (float)(v[i] / norm);
}

static const char *const words[] = {
    "vector", "store", "chunk", "search", "index", "source", "workspace",
    "query",  "model", "token", "memory", "agent",  "embedding", "cosine",
    "graph",  "layer", "recall", "batch", "ingest", "document"};

static void fill_text(char *dst, size_t len) {
  size_t n = 0;
  while (n + 12 < len) {
    const char *w = words[next_u64() % (sizeof words / sizeof words[0])];
    n += (size_t)snprintf(dst + n, len - n, "%s%s", n ? " " : "", w);
  }
  dst[n] = '\0';
}

int corpus_make(corpus *c, size_t n_docs, size_t dim, size_t cpd,
                size_t n_sources, size_t n_workspaces) {
  memset(c, 0, sizeof *c);
  rng = 0x9E3779B97F4A7C15ULL;
  c->n_docs = n_docs;
  c->dim = dim;
  c->chunks_per_doc = cpd;
  c->n_sources = n_sources;
  c->n_workspaces = n_workspaces;
  size_t n_chunks = n_docs * cpd;
  size_t per_doc = 3 * SLOT + TEXT_BYTES + cpd * (SLOT + CHUNK_TEXT_BYTES);
  c->docs = calloc(n_docs, sizeof *c->docs);
  c->chunks = calloc(n_chunks ? n_chunks : 1, sizeof *c->chunks);
  c->vectors = malloc((n_docs + n_chunks) * dim * sizeof(float));
  c->strings = malloc(n_docs * per_doc);
  if (!c->docs || !c->chunks || !c->vectors || !c->strings)
    return -1;
  for (size_t i = 0; i < n_docs; i++) {
    char *p = c->strings + i * per_doc;
    char *id = p, *src = p + SLOT, *meta = p + 2 * SLOT, *text = p + 3 * SLOT;
    snprintf(id, SLOT, "doc-%07zu", i);
    snprintf(src, SLOT, "source-%zu", i % n_sources);
    snprintf(meta, SLOT, "{\"workspace\": \"ws-%zu\", \"n\": %zu}",
             i % n_workspaces, i);
    fill_text(text, TEXT_BYTES);
    float *v = c->vectors + i * dim;
    unit_vector(v, dim);
    es_chunk *ch = c->chunks + i * cpd;
    char *cp = text + TEXT_BYTES;
    for (size_t k = 0; k < cpd; k++) {
      char *cid = cp + k * (SLOT + CHUNK_TEXT_BYTES), *ctext = cid + SLOT;
      snprintf(cid, SLOT, "doc-%07zu#%zu", i, k);
      fill_text(ctext, CHUNK_TEXT_BYTES);
      float *cv = c->vectors + (n_docs + i * cpd + k) * dim;
      unit_vector(cv, dim);
      ch[k] = (es_chunk){.id = cid, .text = ctext, .embedding = cv, .dim = dim,
                         .metadata_json = NULL};
    }
    c->docs[i] = (es_doc){.id = id, .text = text, .embedding = v, .dim = dim,
                          .metadata_json = meta, .source_id = src,
                          .has_chunks = cpd > 0, .chunks = ch, .n_chunks = cpd};
  }
  return 0;
}

void corpus_change(corpus *c) {
  c->generation++;
  for (size_t i = 0; i < c->n_docs; i += 10) {
    char *text = (char *)c->docs[i].text;
    snprintf(text, 16, "v%u ", c->generation); /* a new prefix */
    text[strlen(text)] = ' ';
  }
}

/* Writes a float with the fewest digits that read back the same. */
static void put_float(FILE *f, float v) {
  char buf[32];
  for (int prec = 6; prec <= 9; prec++) {
    snprintf(buf, sizeof buf, "%.*g", prec, (double)v);
    if (strtof(buf, NULL) == v)
      break;
  }
  fputs(buf, f);
}

static void put_vector(FILE *f, const float *v, size_t dim) {
  fputc('[', f);
  for (size_t i = 0; i < dim; i++) {
    if (i)
      fputc(',', f);
    put_float(f, v[i]);
  }
  fputc(']', f);
}

int corpus_write_jsonl(const corpus *c, FILE *f) {
  for (size_t i = 0; i < c->n_docs; i++) {
    const es_doc *d = &c->docs[i];
    fprintf(f, "{\"id\":\"%s\",\"text\":\"%s\",\"source_id\":\"%s\",\"metadata\":%s,"
               "\"embedding\":",
            d->id, d->text, d->source_id, d->metadata_json);
    put_vector(f, d->embedding, d->dim);
    fputs(",\"chunks\":[", f);
    for (size_t k = 0; k < d->n_chunks; k++) {
      const es_chunk *ch = &d->chunks[k];
      fprintf(f, "%s{\"id\":\"%s\",\"text\":\"%s\",\"embedding\":", k ? "," : "",
              ch->id, ch->text);
      put_vector(f, ch->embedding, ch->dim);
      fputc('}', f);
    }
    fputs("]}\n", f);
  }
  return ferror(f) ? -1 : 0;
}

void corpus_free(corpus *c) {
  free(c->docs);
  free(c->chunks);
  free(c->vectors);
  free(c->strings);
  memset(c, 0, sizeof *c);
}
