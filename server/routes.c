/* routes.c - every route of the API, in one table: what the OpenAPI file
 * (server/openapi.json) describes and the tests compare it with. */
#include <stdlib.h>
#include <string.h>

#include "http.h"

const route routes[] = {
    {"GET", "/healthz", 0, BODY_NONE, h_healthz, "/healthz"},
    {"GET", "/readyz", 0, BODY_NONE, h_readyz, "/readyz"},
    {"GET", "/v1/openapi.json", 0, BODY_NONE, h_openapi, "/v1/openapi.json"},
    {"POST", "/v1/documents", ROLE_WRITE, BODY_INGEST, h_ingest, "/v1/documents"},
    {"GET", "/v1/documents", ROLE_READ, BODY_NONE, h_list_documents,
     "/v1/documents"},
    {"GET", "/v1/documents/{}", ROLE_READ, BODY_NONE, h_get_document,
     "/v1/documents/{id}"},
    {"DELETE", "/v1/documents/{}", ROLE_WRITE, BODY_NONE, h_delete_document,
     "/v1/documents/{id}"},
    {"DELETE", "/v1/sources/{}", ROLE_WRITE, BODY_NONE, h_delete_source,
     "/v1/sources/{source_id}"},
    {"GET", "/v1/export", ROLE_READ, BODY_NONE, h_export, "/v1/export"},
    {"POST", "/v1/delete", ROLE_WRITE, BODY_JSON, h_delete_filter, "/v1/delete"},
    {"POST", "/v1/search", ROLE_READ, BODY_JSON, h_search, "/v1/search"},
    {"GET", "/v1/stats", ROLE_READ, BODY_NONE, h_stats, "/v1/stats"},
    {"POST", "/v1/cleanup", ROLE_ADMIN, BODY_JSON, h_cleanup, "/v1/cleanup"},
    {"GET", "/v1/metrics", ROLE_ADMIN, BODY_NONE, h_metrics_json, "/v1/metrics"},
    {"GET", "/metrics", ROLE_ADMIN, BODY_NONE, h_metrics_prom, "/metrics"},
    {"POST", "/mcp", ROLE_READ, BODY_JSON, h_mcp_post, "/mcp"},
    {"DELETE", "/mcp", ROLE_READ, BODY_NONE, h_mcp_delete, "/mcp"},
};
const size_t n_routes = sizeof routes / sizeof routes[0];

/* Whether path matches pattern; a "{}" tail matches one non-empty raw
 * segment, decoded into *param. *bad when it does not decode. */
static bool match(const char *pattern, const char *path, char **param, bool *bad) {
  const char *hole = strstr(pattern, "{}");
  if (hole == NULL)
    return strcmp(pattern, path) == 0;
  size_t fixed = (size_t)(hole - pattern);
  if (strncmp(pattern, path, fixed) != 0)
    return false;
  const char *seg = path + fixed;
  if (seg[0] == '\0' || strchr(seg, '/') != NULL)
    return false;
  if (param) {
    *param = percent_decode(seg, strlen(seg), false);
    if (*param == NULL)
      *bad = true;
  }
  return true;
}

const route *route_find(const char *method, const char *path, char **param,
                        int *status, char *allow, size_t cap) {
  bool known = false, bad = false;
  size_t used = 0;
  allow[0] = '\0';
  for (size_t i = 0; i < n_routes; i++) {
    if (!match(routes[i].pattern, path, NULL, &bad))
      continue;
    /* HEAD wherever GET (libmicrohttpd sends the headers only). */
    if (strcmp(routes[i].method, method) == 0 ||
        (strcmp(method, "HEAD") == 0 && strcmp(routes[i].method, "GET") == 0)) {
      *param = NULL;
      match(routes[i].pattern, path, param, &bad);
      if (bad) {
        *status = 400;
        return NULL;
      }
      return &routes[i];
    }
    known = true;
    int n = snprintf(allow + used, cap - used, "%s%s", used ? ", " : "",
                     routes[i].method);
    if (n > 0 && (size_t)n < cap - used)
      used += (size_t)n;
  }
  *status = known ? 405 : 404;
  return NULL;
}
