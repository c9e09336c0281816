/* corpus.c - the benchmarks' reproducible corpus. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "corpus.h"

#define TEXT_BYTES 200
#define CHUNK_TEXT_BYTES 120
#define SLOT 64 /* bytes for an id, source or metadata string */

static uint64_t rng = 0x9E3779B97F4A7C15ULL;

/* xorshift64 on the state at s. */
static uint64_t next_u64_at(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static uint64_t next_u64(void) { return next_u64_at(&rng); }

/* A standard normal deviate (Box-Muller) from the state at s. */
static double normal_at(uint64_t *s) {
  double u1 = ((double)(next_u64_at(s) >> 11) + 1.0) / 9007199254740993.0;
  double u2 = (double)(next_u64_at(s) >> 11) / 9007199254740992.0;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* A random unit vector (uniform on the sphere, via normal deviates). */
static void unit_vector(float *v, size_t dim) {
  double norm = 0;
  for (size_t i = 0; i < dim; i++) {
    v[i] = (float)normal_at(&rng);
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

/* Whether v printed with prec significant digits into buf reads back as
 * v; *n receives the length. */
static bool prints_back(char *buf, float v, int prec, int *n) {
  *n = snprintf(buf, 32, "%.*g", prec, (double)v);
  return strtof(buf, NULL) == v;
}

/* v with the fewest digits (at least 6) that read back the same, into buf
 * (32 bytes); returns its length.  Random components mostly need 8 or 9
 * digits, so the search starts at 8 (writing a corpus is dominated by
 * this); nine always read back. */
static int format_float(char *buf, float v) {
  int n;
  if (!prints_back(buf, v, 8, &n)) {
    n = snprintf(buf, 32, "%.9g", (double)v);
    return n;
  }
  for (int prec = 7; prec >= 6; prec--) {
    char shorter[32];
    int m;
    if (!prints_back(shorter, v, prec, &m))
      break;
    memcpy(buf, shorter, (size_t)m + 1);
    n = m;
  }
  return n;
}

/* Writes a float with the fewest digits that read back the same. */
static void put_float(FILE *f, float v) {
  char buf[32];
  format_float(buf, v);
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

/* ---- streaming --------------------------------------------------------------- */

#define TABLE_SIZE 65536
#define OUT_BYTES (1u << 20)

/* What corpus_stream_jsonl writes with: the output buffer and the table
 * of preformatted components. */
typedef struct stream {
  int fd;
  char *buf;
  size_t len;
  uint64_t rng;
  char (*table)[16]; /* NUL-terminated */
  unsigned char *table_len;
} stream;

/* Writes the buffer out; -1 with errno set when fd fails. */
static int stream_flush(stream *s) {
  for (size_t off = 0; off < s->len;) {
    ssize_t w = write(s->fd, s->buf + off, s->len - off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      return -1;
    off += (size_t)w;
  }
  s->len = 0;
  return 0;
}

static void stream_add(stream *s, const char *p, size_t n) {
  memcpy(s->buf + s->len, p, n);
  s->len += n;
}

static void stream_str(stream *s, const char *p) { stream_add(s, p, strlen(p)); }

/* Random words, about len bytes. */
static void stream_text(stream *s, size_t len) {
  size_t n = 0;
  while (n + 12 < len) {
    const char *w = words[next_u64_at(&s->rng) % (sizeof words / sizeof words[0])];
    if (n)
      stream_add(s, " ", 1);
    stream_str(s, w);
    n += strlen(w) + (n > 0);
  }
}

/* A vector of dim components drawn from the table, as a JSON array. */
static void stream_vector(stream *s, size_t dim) {
  stream_add(s, "[", 1);
  uint64_t bits = 0;
  for (size_t i = 0; i < dim; i++) {
    if (i % 4 == 0)
      bits = next_u64_at(&s->rng);
    unsigned k = (unsigned)(bits & (TABLE_SIZE - 1));
    bits >>= 16;
    if (i)
      stream_add(s, ",", 1);
    stream_add(s, s->table[k], s->table_len[k]);
  }
  stream_add(s, "]", 1);
}

int corpus_stream_jsonl(int fd, size_t n_docs, size_t dim, size_t cpd,
                        size_t n_sources, size_t n_workspaces) {
  stream s = {.fd = fd, .rng = 0x2545F4914F6CDD1DULL};
  size_t per_doc = 512 + (cpd + 1) * (dim * 17 + 256); /* the most one takes */
  s.buf = malloc(OUT_BYTES + per_doc);
  s.table = malloc(TABLE_SIZE * sizeof *s.table);
  s.table_len = malloc(TABLE_SIZE);
  int rc = -1;
  if (!s.buf || !s.table || !s.table_len) {
    errno = ENOMEM;
    goto done;
  }
  for (size_t k = 0; k < TABLE_SIZE; k++) {
    char tmp[32];
    int n = format_float(tmp, (float)(normal_at(&s.rng) / sqrt((double)dim)));
    memcpy(s.table[k], tmp, (size_t)n + 1);
    s.table_len[k] = (unsigned char)n;
  }
  for (size_t i = 0; i < n_docs; i++) {
    char head[256];
    snprintf(head, sizeof head, "{\"id\":\"doc-%07zu\",\"text\":\"", i);
    stream_str(&s, head);
    stream_text(&s, TEXT_BYTES);
    snprintf(head, sizeof head, "\",\"source_id\":\"source-%zu\",\"metadata\":"
             "{\"workspace\": \"ws-%zu\", \"n\": %zu},\"embedding\":",
             i % n_sources, i % n_workspaces, i);
    stream_str(&s, head);
    stream_vector(&s, dim);
    stream_str(&s, ",\"chunks\":[");
    for (size_t k = 0; k < cpd; k++) {
      snprintf(head, sizeof head, "%s{\"id\":\"doc-%07zu#%zu\",\"text\":\"",
               k ? "," : "", i, k);
      stream_str(&s, head);
      stream_text(&s, CHUNK_TEXT_BYTES);
      stream_str(&s, "\",\"embedding\":");
      stream_vector(&s, dim);
      stream_add(&s, "}", 1);
    }
    stream_add(&s, "]}\n", 3);
    if (s.len >= OUT_BYTES && stream_flush(&s) != 0)
      goto done;
  }
  rc = stream_flush(&s);
done:
  free(s.buf);
  free(s.table);
  free(s.table_len);
  return rc;
}

void corpus_query_vector(float *v, size_t dim, unsigned n) {
  uint64_t s = 0xD1B54A32D192ED03ULL ^ ((uint64_t)n * 0x9E3779B97F4A7C15ULL);
  if (s == 0)
    s = 1;
  double norm = 0;
  for (size_t i = 0; i < dim; i++) {
    v[i] = (float)normal_at(&s);
    norm += (double)v[i] * v[i];
  }
  norm = sqrt(norm);
  for (size_t i = 0; i < dim; i++)
    v[i] = (float)(v[i] / norm);
}

void corpus_vector_json(char *buf, size_t cap, const float *v, size_t dim) {
  size_t n = 0;
  buf[n++] = '[';
  for (size_t i = 0; i < dim && n + 34 < cap; i++) {
    if (i)
      buf[n++] = ',';
    n += (size_t)format_float(buf + n, v[i]);
  }
  buf[n++] = ']';
  buf[n] = '\0';
}
