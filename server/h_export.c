/* h_export.c - GET /v1/export: the documents, with their chunks, in the
 * ingest format (application/x-ndjson), as `embstore export` writes them,
 * streamed a page at a time (?source=&workspace=&filter=&embeddings=true).
 *
 * The first page is read before the answer starts, so a bad filter or an
 * unreachable database is a plain 400 or 503.  A page that fails later
 * cannot change the status any more: the stream then ends with one line
 * {"error":{...}} and the connection is cut without the final chunk, so a
 * client can never take a broken export for a whole one. */
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "render.h"

#define PAGE 500

typedef struct export_stream {
  es_store *store;
  es_list_params p;
  selection sel;
  char **scope;         /* a copy of the token's workspaces */
  char *after;          /* where the next page starts; NULL after the last */
  char *buf;            /* the lines of the page being sent */
  size_t len, off;
  bool last, failed;
} export_stream;

static void stream_free(void *cls) {
  export_stream *x = cls;
  for (size_t i = 0; x->scope && i < x->p.n_workspaces; i++)
    free(x->scope[i]);
  free(x->scope);
  selection_free(&x->sel);
  free(x->after);
  free(x->buf);
  free(x);
}

/* Renders the next page into x->buf; false (and x->buf the error line)
 * when it could not be read. */
static bool next_page(export_stream *x, es_status *st) {
  free(x->buf);
  x->buf = NULL;
  x->len = x->off = 0;
  es_document_list *l = NULL;
  x->p.after = x->after;
  *st = es_list_documents(x->store, &x->p, &l);
  FILE *f = open_memstream(&x->buf, &x->len);
  if (f == NULL) {
    es_document_list_free(l);
    *st = ES_ENOMEM;
    return false;
  }
  jw w;
  if (*st != ES_OK) {
    jw_init(&w, f);
    jw_obj(&w);
    jw_key(&w, "error");
    jw_obj(&w);
    jw_key(&w, "status");
    jw_str(&w, es_status_name(*st));
    jw_key(&w, "message");
    jw_str(&w, es_errmsg(x->store));
    jw_obj_end(&w);
    jw_obj_end(&w);
    jw_done(&w);
  }
  for (size_t i = 0; l && i < l->n; i++) {
    jw_init(&w, f);
    render_export(&w, &l->documents[i], x->p.include_embedding);
    jw_done(&w);
  }
  bool ok = fclose(f) == 0 && x->buf != NULL && *st == ES_OK;
  if (*st == ES_OK && !ok)
    *st = ES_ENOMEM;
  free(x->after);
  x->after = l ? l->next_after : NULL;
  if (l)
    l->next_after = NULL;
  x->last = x->after == NULL;
  es_document_list_free(l);
  return ok;
}

static ssize_t read_stream(void *cls, uint64_t pos, char *out, size_t max) {
  export_stream *x = cls;
  (void)pos;
  while (x->off == x->len) {
    if (x->failed)
      return MHD_CONTENT_READER_END_WITH_ERROR;
    if (x->last)
      return MHD_CONTENT_READER_END_OF_STREAM;
    es_status st;
    if (!next_page(x, &st)) {
      x->failed = true;
      if (x->buf == NULL)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
  }
  size_t n = x->len - x->off < max ? x->len - x->off : max;
  memcpy(out, x->buf + x->off, n);
  x->off += n;
  return (ssize_t)n;
}

void h_export(request *rq) {
  export_stream *x = calloc(1, sizeof *x);
  if (x == NULL) {
    reply_error(rq, 500, "ES_ENOMEM", "out of memory");
    return;
  }
  x->store = rq->sv->store;
  es_list_params_init(&x->p);
  int embeddings = 0;
  if (!selection_read(rq, &x->sel, &x->p) ||
      (embeddings = query_bool(rq, "embeddings")) < 0) {
    stream_free(x);
    return;
  }
  x->p.limit = PAGE;
  x->p.include_chunks = 1;
  x->p.include_embedding = embeddings;
  if (x->p.workspaces) { /* the token set may be reloaded meanwhile */
    size_t n = x->p.n_workspaces;
    bool copied = (x->scope = calloc(n + 1, sizeof *x->scope)) != NULL;
    x->p.n_workspaces = 0; /* counts the copies, which stream_free frees */
    for (size_t i = 0; copied && i < n; i++, x->p.n_workspaces++)
      copied = (x->scope[i] = strdup(x->p.workspaces[i])) != NULL;
    if (!copied) {
      stream_free(x);
      reply_error(rq, 500, "ES_ENOMEM", "out of memory");
      return;
    }
    x->p.workspaces = (const char *const *)x->scope;
  }
  es_status st;
  if (!next_page(x, &st)) {
    reply_failure(rq, st);
    stream_free(x);
    return;
  }
  reply_stream(rq, 200, "application/x-ndjson", read_stream, x, stream_free);
}
