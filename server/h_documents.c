/* h_documents.c - one document: GET and DELETE /v1/documents/{id};
 * DELETE /v1/sources/{source_id}; POST /v1/delete, by metadata filter.  A tenant's token sees only its
 * workspaces: a document of another answers 404 exactly as a missing one
 * (the library checks the scope in the statement that reads it). */
#include <stdlib.h>
#include <string.h>

#include "body.h"
#include "http.h"
#include "render.h"

/* The token's workspaces as the library's scope (NULL: every one). */
static const char *const *scope_of(const request *rq, size_t *n) {
  *n = 0;
  if (rq->tok == NULL || rq->tok->all_workspaces)
    return NULL;
  *n = rq->tok->n_workspaces;
  return (const char *const *)rq->tok->workspaces;
}

bool document_visible(request *rq, const char *id) {
  es_get_options o;
  es_get_options_init(&o);
  o.workspaces = scope_of(rq, &o.n_workspaces);
  es_document *d = NULL;
  es_status st = es_get_document(rq->sv->store, id, &o, &d);
  es_document_free(d);
  return st == ES_OK;
}

void h_get_document(request *rq) {
  bool bad = false;
  char *include = query_arg(rq, "include", &bad);
  if (bad || (include && strcmp(include, "embedding") != 0)) {
    reply_error(rq, 400, "ES_EINVAL", "include may only be \"embedding\"");
    free(include);
    return;
  }
  es_get_options o;
  es_get_options_init(&o);
  o.include_embedding = include != NULL;
  o.workspaces = scope_of(rq, &o.n_workspaces);
  free(include);
  es_document *d = NULL;
  es_status st = es_get_document(rq->sv->store, rq->param, &o, &d);
  if (st != ES_OK) {
    reply_failure(rq, st);
    return;
  }
  jout out;
  if (jout_open(&out)) {
    render_document(&out.w, d, o.include_embedding);
    reply_jout(rq, 200, &out);
  }
  es_document_free(d);
}

/* cascade=false and dry_run=true into o; false when rq was answered. */
static bool delete_flags(request *rq, es_delete_options *o) {
  int cascade = 1, dry = query_bool(rq, "dry_run");
  const char *raw = MHD_lookup_connection_value(rq->mc, MHD_GET_ARGUMENT_KIND,
                                                "cascade");
  if (dry >= 0 && raw)
    cascade = query_bool(rq, "cascade");
  if (dry < 0 || cascade < 0)
    return false;
  o->dry_run = dry;
  o->no_cascade = !cascade;
  return true;
}

void h_delete_document(request *rq) {
  es_delete_options o;
  es_delete_options_init(&o);
  if (!delete_flags(rq, &o))
    return;
  o.workspaces = scope_of(rq, &o.n_workspaces);
  const char *ids[1] = {rq->param};
  es_delete_result *r = NULL;
  es_status st = es_delete_documents(rq->sv->store, ids, 1, &o, &r);
  if (st != ES_OK) {
    reply_failure(rq, st);
  } else if (r->not_found > 0) {
    reply_error(rq, 404, "ES_ENOTFOUND", "no document with id \"%s\"", rq->param);
  } else {
    jout out;
    if (jout_open(&out)) {
      render_delete(&out.w, r, false);
      reply_jout(rq, 200, &out);
    }
  }
  es_delete_result_free(r);
}

static void delete_scoped(request *rq, const char *source, const char *filter,
                          const char *ws, es_delete_options *o);

void h_delete_source(request *rq) {
  es_delete_options o;
  es_delete_options_init(&o);
  if (!delete_flags(rq, &o))
    return;
  bool bad = false;
  char *ws = query_arg(rq, "workspace", &bad);
  if (bad)
    reply_error(rq, 400, "ES_EINVAL", "workspace is not valid UTF-8");
  else
    delete_scoped(rq, rq->param, NULL, ws, &o);
  free(ws);
}

/* The scoped delete of a source or a filter's documents, answered as
 * `embstore delete --json`; o's flags already set. */
static void delete_scoped(request *rq, const char *source, const char *filter,
                          const char *ws, es_delete_options *o) {
  if (ws && !may_see(rq, ws)) {
    reply_error(rq, 403, "ES_EFORBIDDEN", "this token may not delete in "
                "workspace \"%s\"", ws);
    return;
  }
  o->workspace = ws;
  o->workspaces = scope_of(rq, &o->n_workspaces);
  o->filter_json = filter;
  es_delete_result *r = NULL;
  es_status st = source ? es_delete_by_source(rq->sv->store, source, o, &r)
                        : es_delete_by_filter(rq->sv->store, filter, o, &r);
  if (st != ES_OK) {
    reply_failure(rq, st);
  } else {
    jout out;
    if (jout_open(&out)) {
      render_delete(&out.w, r, false);
      reply_jout(rq, 200, &out);
    }
  }
  es_delete_result_free(r);
}

void h_delete_filter(request *rq) {
  static const char *const known[] = {"filter", "workspace", "source",
                                      "cascade", "dry_run", "all", NULL};
  json_t *j = body_object(rq);
  if (j == NULL)
    return;
  bool ok = body_only(rq, j, known);
  es_delete_options o;
  es_delete_options_init(&o);
  const char *ws = ok ? body_string(rq, j, "workspace", &ok) : NULL;
  const char *source = ok ? body_string(rq, j, "source", &ok) : NULL;
  o.no_cascade = ok && !body_bool(rq, j, "cascade", true, &ok);
  o.dry_run = ok && body_bool(rq, j, "dry_run", false, &ok);
  bool all = ok && body_bool(rq, j, "all", false, &ok);
  char *filter = ok ? body_object_text(rq, j, "filter", &ok) : NULL;
  if (ok && filter == NULL) {
    reply_error(rq, 400, "ES_EINVAL", "field \"filter\" is required: a JSON "
                "object the documents' metadata contains ({} for every "
                "document)");
    ok = false;
  }
  if (ok && source == NULL && json_object_size(json_object_get(j, "filter")) == 0 &&
      !all) {
    reply_error(rq, 400, "ES_EINVAL", "a filter of {} matches every document: "
                "add \"all\": true to delete them all");
    ok = false;
  }
  if (ok && source && source[0] == '\0') {
    reply_error(rq, 400, "ES_EINVAL", "field \"source\" must not be empty");
    ok = false;
  }
  if (ok)
    delete_scoped(rq, source, filter, ws, &o);
  free(filter);
  json_decref(j);
}
