/* h_search.c - POST /v1/search: {"vector":[...]} or {"like":"id"} and/or
 * {"text":"..."}, "mode", "k", "rrf_k", "weights":[V,T], "workspace",
 * "source", "exact", "filter", "chunks", "any_model"; answers as
 * `embstore search --json`.  With the server's embedding provider
 * (serve --embed-url) a "text" alone is embedded too. */
#include <stdlib.h>
#include <string.h>

#include "body.h"
#include "json_spans.h"
#include "render.h"

void h_search(request *rq) {
  static const char *const known[] = {"vector", "like", "k", "workspace",
                                      "source", "exact", "filter", "text",
                                      "mode", "rrf_k", "weights", "chunks",
                                      "any_model", NULL};
  float *vec = NULL;
  size_t dim = 0;
  json_t *j = body_object_lifting(rq, "vector", &vec, &dim);
  if (j == NULL)
    return;
  bool ok = body_only(rq, j, known);
  es_search_params p;
  es_search_params_init(&p);
  if (ok) {
    p.like_id = body_string(rq, j, "like", &ok);
    p.workspace = ok ? body_string(rq, j, "workspace", &ok) : NULL;
    p.source_id = ok ? body_string(rq, j, "source", &ok) : NULL;
    p.k = ok ? (int)body_int(rq, j, "k", 1, 1000, 10, &ok) : 10;
    p.exact = ok && body_bool(rq, j, "exact", false, &ok);
    p.chunks = ok && body_bool(rq, j, "chunks", false, &ok);
    p.any_model = ok && body_bool(rq, j, "any_model", false, &ok);
  }
  char *filter = ok ? body_object_text(rq, j, "filter", &ok) : NULL;
  p.filter_json = filter;
  p.text = ok ? body_string(rq, j, "text", &ok) : NULL;
  const char *mode = ok ? body_string(rq, j, "mode", &ok) : NULL;
  if (ok && mode && (es_search_mode_parse(mode, &p.mode) != ES_OK ||
                     p.mode == ES_SEARCH_AUTO)) {
    reply_error(rq, 400, "ES_EINVAL", "field \"mode\" must be \"vector\", "
                "\"text\" or \"hybrid\"");
    ok = false;
  }
  p.rrf_k = ok ? (int)body_int(rq, j, "rrf_k", 1, 10000, 0, &ok) : 0;
  json_t *w = json_object_get(j, "weights");
  if (ok && w && !json_is_null(w)) {
    json_t *wv = json_array_get(w, 0), *wt = json_array_get(w, 1);
    if (!json_is_array(w) || json_array_size(w) != 2 || !json_is_number(wv) ||
        !json_is_number(wt) || json_number_value(wv) < 0 ||
        json_number_value(wt) < 0 ||
        json_number_value(wv) + json_number_value(wt) <= 0 ||
        json_number_value(wv) > 1e300 || json_number_value(wt) > 1e300) {
      reply_error(rq, 400, "ES_EINVAL", "field \"weights\" must be [V, T]: two "
                  "numbers >= 0, not both 0");
      ok = false;
    } else {
      p.weight_vector = json_number_value(wv);
      p.weight_text = json_number_value(wt);
    }
  }
  json_t *v = json_object_get(j, "vector");
  if (ok && v != NULL && p.like_id != NULL) {
    reply_error(rq, 400, "ES_EINVAL", "give either \"vector\" or \"like\"");
    ok = false;
  } else if (ok && v == NULL && p.like_id == NULL && p.text == NULL) {
    reply_error(rq, 400, "ES_EINVAL", "give \"vector\", \"like\" or \"text\"");
    ok = false;
  }
  if (ok && v != NULL && vec == NULL) {
    /* The client's own digits, read as the tool reads them. */
    span sp;
    char msg[256];
    if (!json_is_array(v) || !json_member_span(rq->body, rq->len, "vector", &sp)) {
      reply_error(rq, 400, "ES_EINVAL", "field \"vector\" must be an array of "
                  "numbers");
      ok = false;
    } else if (es_vector_parse_json(sp.p, sp.len, "vector", &vec, &dim, msg,
                                    sizeof msg) != ES_OK) {
      reply_error(rq, 400, "ES_EINVAL", "%s", msg);
      ok = false;
    }
  }
  p.vector = vec;
  p.dim = dim;
  bool stop = false;
  if (ok && p.workspace && !may_see(rq, p.workspace)) {
    reply_error(rq, 403, "ES_EFORBIDDEN", "this token may not search workspace "
                "\"%s\"", p.workspace);
    ok = false;
  } else if (ok && p.workspace == NULL) {
    p.workspace = default_workspace(rq, &stop);
    ok = !stop;
  }
  if (ok && p.like_id && rq->tok && !rq->tok->all_workspaces &&
      !document_visible(rq, p.like_id)) {
    reply_error(rq, 404, "ES_ENOTFOUND", "no document with id \"%s\"", p.like_id);
    ok = false;
  }
  es_results *r = NULL;
  if (ok) {
    es_status st = es_search(rq->sv->store, &p, &r);
    if (st != ES_OK) {
      reply_failure(rq, st);
    } else {
      jout o;
      if (jout_open(&o)) {
        render_results(&o.w, r);
        reply_jout(rq, 200, &o);
      }
    }
  }
  es_results_free(r);
  es_vector_free(vec);
  free(filter);
  json_decref(j);
}
