/* h_basic.c - the routes that ask nothing of the data: alive, ready, and
 * the API's own description. */
#include <string.h>

#include "http.h"

extern const char es_openapi_json[];
extern const unsigned long es_openapi_json_len;

void h_healthz(request *rq) {
  static const char ok[] = "{\"status\":\"ok\"}\n";
  reply_raw(rq, 200, "application/json", ok, sizeof ok - 1);
}

/* Ready when the database answers and holds an initialised store. */
void h_readyz(request *rq) {
  int dim = 0;
  es_metric metric;
  es_status st = es_store_ping(rq->sv->store);
  if (st == ES_OK)
    st = es_store_shape(rq->sv->store, &dim, &metric);
  if (st != ES_OK) {
    reply_error(rq, 503, es_status_name(st), "not ready: %s",
                es_errmsg(rq->sv->store));
    return;
  }
  jout o;
  if (!jout_open(&o))
    return;
  jw_obj(&o.w);
  jw_key(&o.w, "status");
  jw_str(&o.w, "ready");
  jw_key(&o.w, "dim");
  jw_int(&o.w, dim);
  jw_key(&o.w, "metric");
  jw_str(&o.w, es_metric_name(metric));
  jw_obj_end(&o.w);
  reply_jout(rq, 200, &o);
}

void h_openapi(request *rq) {
  reply_raw(rq, 200, "application/json", es_openapi_json,
            (size_t)es_openapi_json_len);
}
