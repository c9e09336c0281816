/* corpus.h - a reproducible synthetic corpus for the benchmarks:
 * documents with chunks and random unit vectors, spread over sources and
 * workspaces.  The same seed gives the same corpus on every machine. */
#ifndef EMBSTORE_BENCH_CORPUS_H
#define EMBSTORE_BENCH_CORPUS_H

#include <stdio.h>

#include "embstore.h"

typedef struct corpus {
  size_t n_docs, dim, chunks_per_doc, n_sources, n_workspaces;
  es_doc *docs;
  es_chunk *chunks;   /* n_docs * chunks_per_doc */
  float *vectors;     /* (n_docs + n_chunks) * dim */
  char *strings;      /* ids, texts, metadata */
  unsigned generation; /* bumped by corpus_change */
} corpus;

/* Builds the corpus in memory. */
int corpus_make(corpus *c, size_t n_docs, size_t dim, size_t chunks_per_doc,
                size_t n_sources, size_t n_workspaces);
/* Changes the text of every tenth document (a "10% changed" re-ingest). */
void corpus_change(corpus *c);
/* Writes it as JSON Lines. */
int corpus_write_jsonl(const corpus *c, FILE *out);
void corpus_free(corpus *c);

/* Streams n_docs documents shaped like corpus_make's (ids "doc-NNNNNNN",
 * texts, sources and workspaces in turn, chunks_per_doc chunks each with a
 * vector) as JSON Lines into fd, holding none of them: for loads larger
 * than memory.  Each vector component is drawn from a table of 65,536
 * preformatted normally distributed floats, so that writing costs little
 * CPU next to the reader being measured; the vectors are not unit length
 * (cosine does not mind).  The same arguments give the same stream.
 * Returns 0, or -1 with errno set (EPIPE when the reader went away). */
int corpus_stream_jsonl(int fd, size_t n_docs, size_t dim, size_t chunks_per_doc,
                        size_t n_sources, size_t n_workspaces);
/* The nth of a reproducible sequence of random unit vectors (queries). */
void corpus_query_vector(float *v, size_t dim, unsigned n);
/* v as a JSON array into buf (cap bytes; 16 per component suffice). */
void corpus_vector_json(char *buf, size_t cap, const float *v, size_t dim);

/* Rows a load writes: documents plus chunks. */
static inline size_t corpus_rows(const corpus *c) {
  return c->n_docs * (1 + c->chunks_per_doc);
}

#endif
