/* stats.c - statistics and index health, from facts.
 *
 * Counts come from embstore_counts (kept exact by triggers, see
 * sql/004_counts.sql), sizes and dead tuples from the catalog, health from
 * the catalog's view of the required indexes and the foreign key, recent
 * performance from performance_metrics.  Nothing here scans the store's
 * tables, except counting orphaned chunks when the foreign key is not
 * valid (the only state in which there can be any). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema.h"

/* Delta rows beyond which a stats call first folds them. */
#define COMPACT_AT 50000
/* How far the counters may be from pg_stat's live-row estimate. */
#define ESTIMATE_SLACK 0.5
#define ESTIMATE_SLACK_ROWS 10000

const char *es_health_name(es_health h) {
  switch (h) {
  case ES_HEALTH_HEALTHY:
    return "healthy";
  case ES_HEALTH_DEGRADED:
    return "degraded";
  case ES_HEALTH_CRITICAL:
    return "critical";
  }
  return "unknown";
}

void es_stats_free(es_stats *st) {
  if (st == NULL)
    return;
  for (size_t i = 0; i < st->sources_total; i++)
    free(st->sources[i].source_id);
  free(st->sources);
  for (size_t i = 0; i < st->n_health_reasons; i++)
    free(st->health_reasons[i]);
  free(st->health_reasons);
  for (size_t i = 0; i < st->n_models; i++)
    free(st->models[i].model);
  free(st->models);
  free((char *)st->workspace);
  free(st);
}

/* The statistics as es_get_statistics allocates them: with a note that a
 * reason could not be recorded (es_stats is public; the note is not). */
typedef struct stats_full {
  es_stats st; /* first: an es_stats * is a stats_full * */
  bool oom;
} stats_full;

/* Lowers health to at least level, with a reason. */
static void fact(es_stats *st, es_health level, const char *fmt, ...)
    ES__PRINTF(3, 4);
static void fact(es_stats *st, es_health level, const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (level > st->index_health)
    st->index_health = level;
  char **g = realloc(st->health_reasons,
                     (st->n_health_reasons + 1) * sizeof *st->health_reasons);
  if (g != NULL)
    st->health_reasons = g;
  if (g == NULL || (g[st->n_health_reasons] = strdup(buf)) == NULL) {
    ((stats_full *)st)->oom = true; /* a health without its reason */
    return;
  }
  st->n_health_reasons++;
}

/* Runs a query with the workspace (or NULL) as $1. */
static PGresult *query_ws(es__conn *c, const char *sql, const char *workspace) {
  const char *v[1] = {workspace};
  return PQexecParams(c->pg, sql, 1, NULL, v, NULL, NULL, 0);
}

/* Whether c is a replica's connection, where nothing can be written. */
static bool on_replica(es_store *s, const es__conn *c) {
  return es__replica_owns(s->replica, c);
}

static es_status counts(es_store *s, es__conn *c, es_stats *st) {
  PGresult *r = PQexec(c->pg, "SELECT count(*) FROM embstore_counts");
  if (!es__res_ok(r)) {
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    es_status rc = state && strcmp(state, "42P01") == 0
                       ? es__fail(s, ES_ENOSTORE, "this store has no counters "
                                  "yet: run `embstore migrate`")
                       : es__fail_pg(s, c->pg, r, "cannot read embstore_counts");
    PQclear(r);
    return rc;
  }
  long long rows = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  if (rows > COMPACT_AT && !on_replica(s, c))
    PQclear(PQexec(c->pg, "SELECT embstore_counts_compact()"));

  r = query_ws(c,
               "SELECT source_id, sum(documents), sum(chunks), sum(without_vector) "
               "FROM embstore_counts WHERE $1::text IS NULL OR workspace = $1 "
               "GROUP BY source_id HAVING sum(documents) <> 0 OR sum(chunks) <> 0 "
               "OR sum(without_vector) <> 0 ORDER BY source_id NULLS FIRST",
               st->workspace);
  if (!es__res_ok(r)) {
    es_status rc = es__fail_pg(s, c->pg, r, "cannot read embstore_counts");
    PQclear(r);
    return rc;
  }
  int n = PQntuples(r);
  st->sources = calloc(n > 0 ? (size_t)n : 1, sizeof *st->sources);
  if (st->sources == NULL) {
    PQclear(r);
    return es__fail(s, ES_ENOMEM, "out of memory");
  }
  bool negative = false;
  for (int i = 0; i < n; i++) {
    es_source_stats *src = &st->sources[st->sources_total++];
    src->source_id = PQgetisnull(r, i, 0) ? NULL : strdup(PQgetvalue(r, i, 0));
    if (src->source_id == NULL && !PQgetisnull(r, i, 0)) {
      PQclear(r);
      return es__fail(s, ES_ENOMEM, "out of memory");
    }
    src->documents = strtoll(PQgetvalue(r, i, 1), NULL, 10);
    src->chunks = strtoll(PQgetvalue(r, i, 2), NULL, 10);
    int64_t without = strtoll(PQgetvalue(r, i, 3), NULL, 10);
    negative = negative || src->documents < 0 || src->chunks < 0 || without < 0;
    st->documents += src->documents;
    st->chunks += src->chunks;
    st->without_vector += without;
  }
  PQclear(r);
  if (negative)
    fact(st, ES_HEALTH_CRITICAL, "the counters hold negative counts: a writer "
         "bypassed their triggers; run `embstore stats --repair` to recount");
  /* Chunks whose document does not exist are counted too (in the whole
   * store: they have no workspace). */
  r = PQexec(c->pg, "SELECT coalesce(sum(all_chunks) - sum(chunks), 0) "
                    "FROM embstore_counts");
  if (!es__res_ok(r)) {
    es_status rc = es__fail_pg(s, c->pg, r, "cannot read embstore_counts");
    PQclear(r);
    return rc;
  }
  st->orphaned_chunks = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  return ES_OK;
}

/* Sizes and dead tuples of the store's tables; health facts about them. */
static const char storage_sql[] =
    "SELECT t.relname, pg_total_relation_size(t.relid), t.n_live_tup, "
    "t.n_dead_tup, t.last_analyze IS NULL AND t.last_autoanalyze IS NULL "
    "FROM pg_stat_user_tables t WHERE t.relid IN (to_regclass('embeddings'), "
    "to_regclass('chunks'), to_regclass('performance_metrics'), "
    "to_regclass('embstore_counts')) ORDER BY 1";

/* On Citus the coordinator's tables are empty shells: sizes come from
 * citus_total_relation_size, tuples and analysis from every shard's own
 * statistics (a shard never analysed, holding rows, makes its table so);
 * performance_metrics is the coordinator's own. */
static const char storage_dist_sql[] =
    "SELECT t.rel, citus_total_relation_size(t.rel::regclass), "
    "sum(split_part(x.result, ',', 1)::float8), "
    "sum(split_part(x.result, ',', 2)::float8), "
    "bool_or(split_part(x.result, ',', 3) = 't' AND "
    "split_part(x.result, ',', 1)::float8 > 0) "
    "FROM unnest(ARRAY['chunks', 'embeddings', 'embstore_counts']) t(rel), "
    "LATERAL run_command_on_shards(t.rel, $$SELECT concat_ws(',', n_live_tup, "
    "n_dead_tup, last_analyze IS NULL AND last_autoanalyze IS NULL) FROM "
    "pg_stat_user_tables WHERE relid = '%s'::regclass$$) x "
    "WHERE x.success GROUP BY 1 "
    "UNION ALL SELECT t.relname::text, pg_total_relation_size(t.relid), "
    "t.n_live_tup, t.n_dead_tup, t.last_analyze IS NULL AND "
    "t.last_autoanalyze IS NULL FROM pg_stat_user_tables t "
    "WHERE t.relid = to_regclass('performance_metrics') ORDER BY 1";

static es_status storage(es_store *s, es__conn *c, es_stats *st,
                         double *bytes, double *dead_bytes, double live_rows[2]) {
  PGresult *r = PQexec(c->pg, es__distributed(s, c) ? storage_dist_sql : storage_sql);
  if (!es__res_ok(r)) {
    es_status rc = es__fail_pg(s, c->pg, r, "cannot read table statistics");
    PQclear(r);
    return rc;
  }
  *bytes = *dead_bytes = 0;
  for (int i = 0; i < PQntuples(r); i++) {
    const char *name = PQgetvalue(r, i, 0);
    double size = es__strtod(PQgetvalue(r, i, 1), NULL);
    double live = es__strtod(PQgetvalue(r, i, 2), NULL);
    double dead = es__strtod(PQgetvalue(r, i, 3), NULL);
    bool never_analyzed = PQgetvalue(r, i, 4)[0] == 't';
    *bytes += size;
    if (live + dead > 0)
      *dead_bytes += size * dead / (live + dead);
    bool data = strcmp(name, "embeddings") == 0 || strcmp(name, "chunks") == 0;
    if (!data)
      continue;
    live_rows[strcmp(name, "chunks") == 0] = live;
    if (dead >= es__strtod(ES__DEAD_MIN, NULL) &&
        dead / (live + dead) > es__strtod(ES__DEAD_SHARE, NULL))
      fact(st, ES_HEALTH_DEGRADED,
           "%s holds %.0f dead tuples (%.0f%% of its rows%s): run `embstore "
           "cleanup`, which vacuums it",
           name, dead, 100.0 * dead / (live + dead),
           strcmp(name, "embeddings") == 0 ? ", and of its HNSW index" : "");
    if (never_analyzed && live > 0)
      fact(st, ES_HEALTH_DEGRADED,
           "%s has never been analysed: the planner is guessing; run `embstore "
           "cleanup`, which analyses it",
           name);
  }
  PQclear(r);
  return ES_OK;
}

/* A required index that is missing: critical, unless it is the HNSW
 * index and a load that deferred it is still running. */
static void missing_index(es_store *s, es__conn *primary, es_stats *st,
                          const es__index_def *def) {
  if (es__index_is_hnsw(def) && es__deferred_load_running(s, primary))
    fact(st, ES_HEALTH_DEGRADED, "index %s is being rebuilt by a load in "
         "progress, which builds it when it ends; searches scan exactly "
         "until then", def->name);
  else
    fact(st, ES_HEALTH_CRITICAL, "index %s on %s (%s) is missing: run "
         "`embstore migrate` to build it (the next `embstore ingest` does "
         "too)", def->name, def->table, def->key);
}

/* The required indexes, the foreign key and the counting triggers, as c
 * sees them; loads in progress are locks that primary holds. */
static es_status structure(es_store *s, es__conn *c, es__conn *primary,
                           es_stats *st) {
  es_metric metric = s->metric;
  size_t n;
  const es__index_def *defs = es__required_indexes(metric, &n);
  for (size_t i = 0; i < n; i++) {
    es__index_state state;
    char *found = NULL;
    es_status rc = es__index_lookup(s, c, &defs[i], &state, &found);
    if (rc != ES_OK)
      return rc;
    if (state == ES__INDEX_MISSING)
      missing_index(s, primary, st, &defs[i]);
    else if (state == ES__INDEX_INVALID)
      fact(st, ES_HEALTH_CRITICAL, "index %s on %s is invalid (a failed "
           "concurrent build?): run `embstore migrate` to rebuild it",
           found ? found : defs[i].name, defs[i].table);
    free(found);
  }
  bool chunks = false;
  es_status crc = es__chunk_index_wanted(s, c, &chunks);
  if (crc != ES_OK)
    return crc;
  if (chunks) {
    es__index_state cst;
    crc = es__index_lookup(s, c, es__chunk_index_def(metric), &cst, NULL);
    if (crc != ES_OK)
      return crc;
    if (cst != ES__INDEX_OK)
      fact(st, ES_HEALTH_DEGRADED, "the chunk index chunks_embedding_hnsw_idx "
           "is %s: chunk searches scan every chunk; %s",
           cst == ES__INDEX_MISSING ? "missing" : "invalid",
           es__deferred_load_running(s, primary) ? "a load in progress builds it "
           "when it ends" : "run `embstore migrate` to build it");
  }
  int text_health;
  char why[400];
  es_status rc = es__text_index_health(s, c, primary, &text_health, why,
                                       sizeof why);
  if (rc != ES_OK)
    return rc;
  if (text_health)
    fact(st, ES_HEALTH_DEGRADED, "%s", why);
  es__fk_state fk;
  rc = es__fk_lookup(s, c, &fk);
  if (rc != ES_OK)
    return rc;
  if (!fk.exists)
    fact(st, ES_HEALTH_CRITICAL, "there is no foreign key chunks.document_id "
         "-> embeddings.id: run `embstore migrate` to add it");
  else if (!fk.valid)
    fact(st, ES_HEALTH_CRITICAL, "the foreign key chunks.document_id -> "
         "embeddings.id is not validated (NOT VALID)%s",
         st->orphaned_chunks > 0 ? "" : ": run `embstore cleanup` to validate it");
  if (st->orphaned_chunks > 0)
    fact(st, ES_HEALTH_DEGRADED, "%lld chunks are orphaned (their document "
         "does not exist%s): run `embstore cleanup`", (long long)st->orphaned_chunks,
         fk.valid ? ", although the foreign key is valid: a writer bypassed it, "
                    "e.g. with session_replication_role = replica" : "");
  if (!fk.cascade && fk.exists)
    fact(st, ES_HEALTH_DEGRADED, "the foreign key %s does not cascade deletes",
         fk.name);
  int enabled = 0;
  if ((rc = es__count_triggers(s, c, &enabled)) != ES_OK)
    return rc;
  if (enabled != ES__COUNT_TRIGGERS)
    fact(st, ES_HEALTH_CRITICAL, "%d of the %d triggers that keep the counts "
         "exact are missing or do not fire always (disabled, or enabled for "
         "origin sessions only): the counts may be stale; run `embstore "
         "migrate`, which restores them and recounts", ES__COUNT_TRIGGERS - enabled,
         ES__COUNT_TRIGGERS);
  return ES_OK;
}

/* Counters that stray far from PostgreSQL's own estimate of the live rows
 * mean that writes bypassed the triggers (their estimate is approximate,
 * hence the slack). */
static void compare_estimates(es_stats *st, const double live[2]) {
  const char *names[2] = {"embeddings", "chunks"};
  double counted[2] = {(double)st->documents,
                       (double)(st->chunks + (st->orphaned_chunks > 0
                                                  ? st->orphaned_chunks : 0))};
  for (int t = 0; t < 2; t++) {
    double diff = counted[t] - live[t];
    if (live[t] < 0 || fabs(diff) <= ESTIMATE_SLACK_ROWS + ESTIMATE_SLACK * live[t])
      continue;
    fact(st, ES_HEALTH_DEGRADED, "%s: the counters say %.0f rows, PostgreSQL "
         "estimates %.0f live: writes may have bypassed the counting triggers; "
         "run `embstore stats --verify`", names[t], counted[t], live[t]);
  }
}

/* Averages over the most recent 1,000 recorded operations. */
static es_status performance(es_store *s, es__conn *c, es_stats *st) {
  PGresult *r = PQexec(
      c->pg,
      "SELECT (SELECT avg(duration_ms) FROM (SELECT duration_ms FROM "
      " performance_metrics WHERE operation = 'search' AND success "
      " ORDER BY created_at DESC LIMIT 1000) t), "
      "(SELECT sum(ms) / nullif(sum(docs), 0) FROM ("
      " (SELECT duration_ms AS ms, coalesce((metadata->>'docs')::float8, 1) AS docs "
      "  FROM performance_metrics WHERE operation = 'ingest_batch' AND success "
      "  ORDER BY created_at DESC LIMIT 1000) UNION ALL "
      " (SELECT duration_ms, 1 FROM performance_metrics WHERE operation = "
      "  'upsert' AND success ORDER BY created_at DESC LIMIT 1000)) t), "
      "(SELECT avg((metadata->>'cache' = 'hit')::int) FROM (SELECT metadata "
      " FROM performance_metrics WHERE operation = 'search' AND "
      " metadata->>'cache' IN ('hit', 'miss') ORDER BY created_at DESC "
      " LIMIT 1000) t)");
  if (!es__res_ok(r)) {
    es_status rc = es__fail_pg(s, c->pg, r, "cannot read performance_metrics");
    PQclear(r);
    return rc;
  }
  double *out[3] = {&st->avg_search_ms, &st->avg_insert_ms, &st->cache_hit_rate};
  for (int i = 0; i < 3; i++)
    *out[i] = PQgetisnull(r, 0, i) ? NAN : es__strtod(PQgetvalue(r, 0, i), NULL);
  PQclear(r);
  return ES_OK;
}

/* Says when one index holds the vectors of several named models. */
static void mixed_models(es_stats *st, bool chunks) {
  char list[300] = "";
  size_t used = 0;
  int named = 0;
  for (size_t i = 0; i < st->n_models; i++) {
    int64_t n = chunks ? st->models[i].chunks : st->models[i].documents;
    if (st->models[i].model == NULL || n <= 0)
      continue;
    named++;
    if (used < sizeof list - 1)
      used += (size_t)snprintf(list + used, sizeof list - used, "%s%s: %lld",
                               named > 1 ? ", " : "", st->models[i].model,
                               (long long)n);
  }
  if (named > 1)
    fact(st, ES_HEALTH_DEGRADED, "the %s hold vectors of %d models (%s): "
         "distances between two models' vectors mean nothing, so a search "
         "ranks them arbitrarily; re-embed with one model",
         chunks ? "chunks" : "documents", named, list);
}

/* The vectors per model (migration 9's counters; none before it).  Their
 * delta rows are folded when many piled up (writers that are not batch
 * sessions, es_upsert, never fold them). */
static es_status models(es_store *s, es__conn *c, es_stats *st) {
  char sql[96];
  snprintf(sql, sizeof sql, "SELECT count(*) > %d FROM embstore_model_counts",
           COMPACT_AT);
  PGresult *r = PQexec(c->pg, sql);
  if (es__res_ok(r) && PQgetvalue(r, 0, 0)[0] == 't' && !on_replica(s, c))
    PQclear(PQexec(c->pg, "SELECT embstore_model_counts_compact()"));
  PQclear(r);
  r = PQexec(
      c->pg,
      "SELECT model, sum(vectors) FILTER (WHERE kind = 'd'), "
      "sum(vectors) FILTER (WHERE kind = 'c') FROM embstore_model_counts "
      "GROUP BY model HAVING sum(vectors) <> 0 ORDER BY model NULLS FIRST");
  const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  if (PQresultStatus(r) == PGRES_FATAL_ERROR && state && !strcmp(state, "42P01")) {
    PQclear(r);
    return ES_OK;
  }
  if (!es__res_ok(r)) {
    es_status rc = es__fail_pg(s, c->pg, r, "cannot read embstore_model_counts");
    PQclear(r);
    return rc;
  }
  int n = PQntuples(r);
  st->models = calloc(n > 0 ? (size_t)n : 1, sizeof *st->models);
  if (st->models == NULL) {
    PQclear(r);
    return es__fail(s, ES_ENOMEM, "out of memory");
  }
  for (int i = 0; i < n; i++) {
    es_model_stats *m = &st->models[st->n_models++];
    if (!PQgetisnull(r, i, 0) && (m->model = strdup(PQgetvalue(r, i, 0))) == NULL) {
      PQclear(r);
      return es__fail(s, ES_ENOMEM, "out of memory");
    }
    m->documents = PQgetisnull(r, i, 1) ? 0 : strtoll(PQgetvalue(r, i, 1), NULL, 10);
    m->chunks = PQgetisnull(r, i, 2) ? 0 : strtoll(PQgetvalue(r, i, 2), NULL, 10);
  }
  PQclear(r);
  mixed_models(st, false);
  mixed_models(st, true);
  return ES_OK;
}

/* Forgets a failed attempt's partial results before a retry. */
static void reset(es_stats *st) {
  const char *ws = st->workspace;
  st->workspace = NULL;
  es_stats tmp = *st;
  tmp.workspace = NULL;
  for (size_t i = 0; i < tmp.sources_total; i++)
    free(tmp.sources[i].source_id);
  free(tmp.sources);
  for (size_t i = 0; i < tmp.n_health_reasons; i++)
    free(tmp.health_reasons[i]);
  free(tmp.health_reasons);
  for (size_t i = 0; i < tmp.n_models; i++)
    free(tmp.models[i].model);
  free(tmp.models);
  memset(st, 0, sizeof *st);
  st->workspace = ws;
  ((stats_full *)st)->oom = false;
}

static es_status stats_op(es_store *s, es__conn *c, void *arg) {
  es_stats *st = arg;
  double bytes = 0, dead = 0, live[2] = {-1, -1};
  reset(st);
  /* A standby keeps no statistics of dead tuples and analyses, and sees
   * no locks of the primary's loads: those are asked of the primary. */
  es__conn *primary = c;
  es_status rc = ES_OK;
  if (on_replica(s, c))
    rc = es__acquire(s, &primary);
  if (rc == ES_OK)
    rc = es__load_shape(s, c);
  if (rc == ES_OK)
    rc = counts(s, c, st);
  if (rc == ES_OK)
    rc = storage(s, primary, st, &bytes, &dead, live);
  if (rc == ES_OK)
    rc = structure(s, c, primary, st);
  if (rc == ES_OK)
    rc = performance(s, c, st);
  if (rc == ES_OK && st->workspace == NULL) /* kept store-wide only */
    rc = models(s, c, st);
  if (primary != c && primary != NULL) {
    es__rollback(primary);
    es__release(s, primary);
  }
  if (rc != ES_OK)
    return rc;
  if (st->workspace == NULL && primary == c) /* the same server's figures */
    compare_estimates(st, live);
  if (st->without_vector > 0)
    fact(st, ES_HEALTH_DEGRADED, "%lld documents have no vector: embed them, "
         "or `embstore cleanup` removes them after the grace period",
         (long long)st->without_vector);
  double share = 1.0;
  if (st->workspace != NULL) {
    /* A workspace's share of the bytes: its share of the store's rows. */
    PGresult *r = PQexec(c->pg, "SELECT sum(documents) + sum(chunks) FROM "
                                "embstore_counts");
    double all = es__res_ok(r) && !PQgetisnull(r, 0, 0)
                     ? es__strtod(PQgetvalue(r, 0, 0), NULL) : 0;
    PQclear(r);
    share = all > 0 ? (double)(st->documents + st->chunks) / all : 0;
  }
  st->storage_mb = bytes * share / (1024.0 * 1024.0);
  st->reclaimable_mb = dead * share / (1024.0 * 1024.0);
  return ES_OK;
}

es_status es_stats_get(es_store *s, const char *workspace, es_stats **out) {
  if (out)
    *out = NULL; /* also when s is NULL: a failed call hands out nothing */
  if (s == NULL || out == NULL)
    return ES_EINVAL;
  es__clear_err(s);
  stats_full *full = calloc(1, sizeof *full);
  if (full == NULL)
    return es__fail(s, ES_ENOMEM, "out of memory");
  es_stats *st = &full->st;
  if (workspace && (st->workspace = strdup(workspace)) == NULL) {
    free(full);
    return es__fail(s, ES_ENOMEM, "out of memory");
  }
  es__metrics_flush_now(s); /* this process's own operations count too */
  es__served served;
  es_status rc = es__run_read(s, "stats", false, stats_op, st, &served);
  st->replica = s->replica != NULL;
  st->served_by_replica = served.replica;
  st->replica_state = served.state;
  st->replica_lag_ms = served.lag_ms;
  if (rc == ES_OK && full->oom)
    rc = es__fail(s, ES_ENOMEM, "out of memory recording the health reasons");
  if (rc != ES_OK) {
    es_stats_free(st);
    return rc;
  }
  *out = st;
  return ES_OK;
}
