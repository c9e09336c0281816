/* h_list.c - GET /v1/documents: a page of documents, as `embstore list
 * --json` prints it, with ?source=&workspace=&filter=&limit=&after=
 * &chunks=true.  A tenant's token lists only its workspaces. */
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "render.h"

/* Query argument name into *out (NULL when absent); false when rq was
 * answered (not UTF-8). */
static bool arg(request *rq, const char *name, char **out) {
  bool bad = false;
  *out = query_arg(rq, name, &bad);
  if (bad)
    reply_error(rq, 400, "ES_EINVAL", "%s is not valid UTF-8", name);
  return !bad;
}

bool selection_read(request *rq, selection *sel, es_list_params *p) {
  memset(sel, 0, sizeof *sel);
  if (!arg(rq, "source", &sel->source) || !arg(rq, "workspace", &sel->ws) ||
      !arg(rq, "filter", &sel->filter))
    return false;
  if (sel->ws && !may_see(rq, sel->ws)) {
    reply_error(rq, 403, "ES_EFORBIDDEN", "this token may not read workspace "
                "\"%s\"", sel->ws);
    return false;
  }
  p->source_id = sel->source;
  p->workspace = sel->ws;
  p->filter_json = sel->filter;
  if (rq->tok && !rq->tok->all_workspaces) {
    p->workspaces = (const char *const *)rq->tok->workspaces;
    p->n_workspaces = rq->tok->n_workspaces;
  }
  return true;
}

void selection_free(selection *sel) {
  free(sel->source);
  free(sel->ws);
  free(sel->filter);
}

void h_list_documents(request *rq) {
  char *after = NULL, *limit = NULL;
  selection sel;
  es_list_params p;
  es_list_params_init(&p);
  int chunks = 0;
  bool ok = selection_read(rq, &sel, &p) && arg(rq, "after", &after) &&
            arg(rq, "limit", &limit) && (chunks = query_bool(rq, "chunks")) >= 0;
  if (ok && limit) {
    char *end;
    long n = strtol(limit, &end, 10);
    if (end == limit || *end != '\0' || n < 1 || n > 10000) {
      reply_error(rq, 400, "ES_EINVAL", "limit must be an integer 1..10000");
      ok = false;
    }
    p.limit = (int)n;
  }
  es_document_list *l = NULL;
  if (ok) {
    p.after = after;
    p.include_chunks = chunks;
    es_status st = es_list_documents(rq->sv->store, &p, &l);
    jout o;
    if (st != ES_OK) {
      reply_failure(rq, st);
    } else if (jout_open(&o)) {
      render_document_list(&o.w, l, chunks, false);
      reply_jout(rq, 200, &o);
    }
  }
  es_document_list_free(l);
  selection_free(&sel);
  free(after);
  free(limit);
}
