/* h_admin.c - the store's health and upkeep: GET /v1/stats, POST
 * /v1/cleanup, GET /v1/metrics; answers as the tool's --json. */
#include <stdlib.h>
#include <string.h>

#include "body.h"
#include "cli.h"
#include "render.h"

#define MAX_SINCE_S (36500LL * 86400) /* as `embstore metrics` */

/* The workspace stats are for; false when rq was answered.  Statistics of
 * the whole store need an admin token that sees every workspace. */
static bool stats_scope(request *rq, char **ws) {
  bool bad = false;
  *ws = query_arg(rq, "workspace", &bad);
  if (bad) {
    reply_error(rq, 400, "ES_EINVAL", "workspace is not valid UTF-8");
    return false;
  }
  if (*ws) {
    if (may_see(rq, *ws))
      return true;
    reply_error(rq, 403, "ES_EFORBIDDEN", "this token may not read workspace "
                "\"%s\"", *ws);
    return false;
  }
  if (rq->tok == NULL || (rq->tok->all_workspaces && rq->tok->role == ROLE_ADMIN))
    return true;
  if (rq->tok->all_workspaces) {
    reply_error(rq, 403, "ES_EFORBIDDEN", "statistics of the whole store need "
                "an admin token; name a workspace with ?workspace=");
    return false;
  }
  bool stop;
  const char *only = default_workspace(rq, &stop);
  if (stop)
    return false;
  *ws = strdup(only);
  return *ws != NULL;
}

void h_stats(request *rq) {
  char *ws = NULL;
  if (!stats_scope(rq, &ws)) {
    free(ws);
    return;
  }
  es_stats *st = NULL;
  es_status rc = es_stats_get(rq->sv->store, ws, &st);
  if (rc != ES_OK) {
    reply_failure(rq, rc);
  } else {
    jout o;
    es_runtime rt;
    es_runtime_get(rq->sv->store, &rt);
    if (jout_open(&o)) {
      render_stats(&o.w, st, NULL, &rt);
      reply_jout(rq, 200, &o);
    }
  }
  es_stats_free(st);
  free(ws);
}

/* Store-wide upkeep: only a token that sees every workspace. */
static bool whole_store(request *rq, const char *what) {
  if (rq->tok == NULL || rq->tok->all_workspaces)
    return true;
  reply_error(rq, 403, "ES_EFORBIDDEN", "%s acts on the whole store: it needs "
              "a token for every workspace (\"*\")", what);
  return false;
}

void h_cleanup(request *rq) {
  static const char *const known[] = {"dry_run", "batch_size", "min_age", NULL};
  if (!whole_store(rq, "cleanup"))
    return;
  json_t *j = body_object(rq);
  if (j == NULL)
    return;
  es_cleanup_options o;
  es_cleanup_options_init(&o);
  bool ok = body_only(rq, j, known);
  if (ok)
    o.dry_run = body_bool(rq, j, "dry_run", false, &ok);
  if (ok)
    o.batch_size = (size_t)body_int(rq, j, "batch_size", 1, 1000000,
                                    (long long)o.batch_size, &ok);
  json_t *age = json_object_get(j, "min_age");
  int64_t secs = o.min_age_s;
  if (ok && age && !json_is_null(age)) {
    if (json_is_integer(age))
      secs = json_integer_value(age);
    else if (!json_is_string(age) || !cli_parse_duration(json_string_value(age), &secs))
      secs = -1;
    if (secs < 0 || secs > 2147483647) {
      reply_error(rq, 400, "ES_EINVAL", "field \"min_age\" must be seconds or a "
                  "duration like 90s, 30m, 1h or 7d, at most 24855d");
      ok = false;
    }
    o.min_age_s = (int)secs;
  }
  if (ok) {
    es_cleanup_result *r = NULL;
    es_status rc = es_cleanup_orphaned(rq->sv->store, &o, &r);
    if (rc != ES_OK) {
      reply_failure(rq, rc);
    } else {
      jout out;
      if (jout_open(&out)) {
        render_cleanup(&out.w, r);
        reply_jout(rq, 200, &out);
      }
    }
    es_cleanup_result_free(r);
  }
  json_decref(j);
}

void h_metrics_json(request *rq) {
  if (!whole_store(rq, "the metrics"))
    return;
  bool bad = false;
  char *since_arg = query_arg(rq, "since", &bad);
  int64_t since = 24 * 3600;
  if (since_arg && strcmp(since_arg, "all") == 0)
    since = 0;
  else if (since_arg && (!cli_parse_duration(since_arg, &since) || since == 0 ||
                         since > MAX_SINCE_S))
    bad = true;
  free(since_arg);
  if (bad) {
    reply_error(rq, 400, "ES_EINVAL", "since must be a duration like 90s, 30m, "
                "1h or 7d (at most 36500d), or all");
    return;
  }
  es_metrics_report *r = NULL;
  es_status rc = es_metrics_report_get(rq->sv->store, since, &r);
  if (rc != ES_OK) {
    reply_failure(rq, rc);
  } else {
    jout o;
    if (jout_open(&o)) {
      render_metrics(&o.w, r, since);
      reply_jout(rq, 200, &o);
    }
  }
  es_metrics_report_free(r);
}
