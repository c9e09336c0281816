/* store.c - opening and closing a store. */
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "listen.h"
#include "internal.h"

void es_options_init(es_options *o) {
  memset(o, 0, sizeof *o);
  o->pool_size = 20;
  o->idle_timeout_ms = 30000;
  o->connect_timeout_s = 2;
  o->statement_timeout_ms = 30000;
  o->max_retries = 3;
  o->retry_backoff_ms = 20;
  o->metrics_retention_s = 7 * 24 * 3600;
  o->cache_bytes = 64u << 20;
  o->cache_ttl_ms = 60000;
  o->embed_timeout_ms = 30000;
  o->embed_max_retries = 4;
  o->embed_retry_backoff_ms = 250;
  o->embed_batch_size = 64;
  o->embed_concurrency = 4;
  o->max_replica_lag_ms = 5000;
  o->replica_retry_ms = 1000;
}

es_status es_open(const char *conninfo, es_store **store) {
  es_options o;
  es_options_init(&o);
  o.conninfo = conninfo;
  return es_open_opts(&o, store);
}

/* Checks options at the door. */
static inline es_status check_options(es_store *s, const es_options *o) {
  if (o->pool_size < 1 || o->pool_size > 1000)
    return es__fail(s, ES_EINVAL, "pool_size must be 1..1000, not %d",
                    o->pool_size);
  if (o->idle_timeout_ms < 0 || o->connect_timeout_s < 0 ||
      o->statement_timeout_ms < 0 || o->max_retries < 0 ||
      o->retry_backoff_ms < 0 || o->metrics_retention_s < 0 ||
      o->cache_ttl_ms < 0 || o->max_replica_lag_ms < 0 ||
      o->replica_retry_ms < 0)
    return es__fail(s, ES_EINVAL, "timeouts and retry counts must not be "
                    "negative");
  if (o->index_memory_mb < 0 || o->index_memory_mb > 2097151)
    return es__fail(s, ES_EINVAL, "index_memory_mb must be 1..2097151 MiB "
                    "(PostgreSQL's maintenance_work_mem bound), or 0 to size "
                    "it from the data, not %d", o->index_memory_mb);
  return ES_OK;
}

/* Connects once so that a bad address fails at open, not later. */
/* Connects once, and learns whether the store is distributed (Citus):
 * its search cache would not hear other processes' writes, whose
 * notifications are sent on the workers. */
static es_status ping(es_store *s, es__conn *conn, void *ctx) {
  (void)ctx;
  (void)es__distributed(s, conn);
  return ES_OK;
}

es_status es_open_opts(const es_options *options, es_store **out) {
  es_status rc;
  es_store *s = calloc(1, sizeof *s);
  *out = s;
  if (s == NULL)
    return ES_ENOMEM;
  pthread_mutex_init(&s->shape_mu, NULL);
  s->pool.size = -1; /* not initialised: es_close must not destroy it */
  if ((rc = es__err_register(s)) != ES_OK)
    return rc;
  if (options == NULL)
    return es__fail(s, ES_EINVAL, "options is NULL");
  s->opts = *options;
  s->opts.conninfo = NULL;
  s->opts.home = NULL;
  s->opts.embed_url = s->opts.embed_model = s->opts.embed_api_key = NULL;
  s->opts.read_conninfo = NULL;
  if ((rc = check_options(s, options)) != ES_OK ||
      (rc = es__embedder_new(s, options, &s->embedder)) != ES_OK)
    return rc;

  if (options->conninfo != NULL) {
    s->conninfo = strdup(options->conninfo);
    if (s->conninfo == NULL)
      return es__fail(s, ES_ENOMEM, "out of memory");
  } else if ((rc = es__embedded_conninfo(s, options->home, &s->conninfo)) != ES_OK) {
    return rc;
  }
  s->redacted = es__conninfo_redact(s->conninfo);
  if (s->redacted == NULL)
    s->redacted = strdup("(unparsable connection string)");
  if ((rc = es__pool_init(s, &s->pool, s->conninfo, &s->opts)) != ES_OK ||
      (rc = es__run(s, NULL, true, ping, NULL)) != ES_OK)
    return rc;
  /* The replica is not asked now: one that is down must not stop the
   * store from opening (reads fall back to the primary). */
  if (options->read_conninfo != NULL &&
      ((rc = es__replica_new(s, options->read_conninfo, &s->replica)) != ES_OK ||
       (rc = es__replica_start(s)) != ES_OK))
    return rc;
  pthread_mutex_lock(&s->shape_mu);
  bool dist = s->distributed == 2; /* learnt by ping */
  pthread_mutex_unlock(&s->shape_mu);
  if (!dist)
    s->cache = es__cache_new(s->opts.cache_bytes, s->opts.cache_ttl_ms);
  if (s->opts.cache_bytes > 0 && s->cache == NULL && !dist)
    return es__fail(s, ES_ENOMEM, "out of memory for the search cache");
  if (s->cache && (s->listener = es__listener_new(s, s->cache)) == NULL)
    return es__fail(s, ES_ENOMEM, "out of memory for the search cache");
  return es__metrics_start(s);
}

void es_close(es_store *s) {
  if (s == NULL)
    return;
  es__metrics_stop(s); /* writes what is still buffered */
  es__listener_free(s->listener); /* before the cache it invalidates */
  es__cache_free(s->cache);
  es__replica_free(s->replica);
  if (s->pool.size != -1)
    es__pool_destroy(&s->pool);
  pthread_mutex_destroy(&s->shape_mu);
  es__err_unregister(s);
  es__embedder_free(s->embedder);
  free(s->conninfo);
  free(s->redacted);
  free(s);
}

static es_status shape_op(es_store *s, es__conn *c, void *ctx) {
  (void)ctx;
  return es__load_shape(s, c);
}

es_status es_store_shape(es_store *s, int *dim, es_metric *metric) {
  if (s == NULL)
    return ES_EINVAL;
  es_status rc = ES_OK;
  pthread_mutex_lock(&s->shape_mu);
  int known = s->dim != 0;
  pthread_mutex_unlock(&s->shape_mu);
  if (!known) {
    es__clear_err(s);
    /* Through es__run: a pooled connection the server closed while it
     * idled is replaced, like in every other operation. */
    if ((rc = es__run(s, NULL, true, shape_op, NULL)) != ES_OK)
      return rc;
  }
  pthread_mutex_lock(&s->shape_mu);
  if (dim)
    *dim = s->dim;
  if (metric)
    *metric = s->metric;
  pthread_mutex_unlock(&s->shape_mu);
  return ES_OK;
}

es_status es_store_ping(es_store *s) {
  if (s == NULL)
    return ES_EINVAL;
  es__clear_err(s);
  return es__run(s, NULL, true, shape_op, NULL);
}

void es_runtime_get(es_store *s, es_runtime *out) {
  memset(out, 0, sizeof *out);
  if (s == NULL)
    return;
  pthread_mutex_lock(&s->pool.mu);
  out->pool_size = s->pool.size;
  out->pool_open = s->pool.open;
  for (es__conn *c = s->pool.idle; c; c = c->next)
    out->pool_idle++;
  pthread_mutex_unlock(&s->pool.mu);
  out->pool_in_use = out->pool_open - out->pool_idle;
  es__cache_counts(s->cache, &out->cache_hits, &out->cache_misses,
                   &out->cache_entries, &out->cache_bytes);
  es__listen_counts lc;
  es__listener_counts(s->listener, &lc);
  out->cache_invalidations = lc.notifications;
  out->cache_listener_reconnects = lc.reconnects;
  out->cache_listening = lc.listening;
  es__replica_runtime(s, out);
}
