/* pool.c - a small pool of libpq connections shared by threads.
 *
 * Connections are opened on demand up to pool.size, handed out most
 * recently used first (warm caches, prepared statements), and closed when
 * they have been idle longer than idle_timeout_ms.  A caller that finds
 * the pool exhausted waits, up to wait_timeout_ms. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

/* Monotonic milliseconds. */
int64_t es__now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Server notices ("relation already exists, skipping") are not errors and
 * must not reach the user's stderr. */
static void ignore_notice(void *arg, const char *message) {
  (void)arg;
  (void)message;
}

/* Session settings that shape how values read as text.  The library never
 * round-trips a timestamp, interval or number through text (cutoffs are
 * computed in SQL or passed in binary), but the server's text output still
 * reaches messages and results, so every connection speaks the same:
 * ISO dates in UTC, PostgreSQL intervals, shortest exact floats. */
#define ES__PINNED_OPTIONS                                                   \
  "-c DateStyle=ISO,YMD -c TimeZone=UTC -c IntervalStyle=postgres "          \
  "-c extra_float_digits=1"

/* libpq sends PGDATESTYLE and PGTZ after the options, where they win: a
 * connection they changed is set back with one statement. */
static bool pin_settings(PGconn *pg) {
  const char *ds = PQparameterStatus(pg, "DateStyle");
  const char *tz = PQparameterStatus(pg, "TimeZone");
  const char *is = PQparameterStatus(pg, "IntervalStyle");
  const char *ce = PQparameterStatus(pg, "client_encoding");
  if (ds && strcmp(ds, "ISO, YMD") == 0 && tz && strcmp(tz, "UTC") == 0 &&
      is && strcmp(is, "postgres") == 0 && ce && strcmp(ce, "UTF8") == 0)
    return true;
  PGresult *r = PQexec(pg, "SET DateStyle = 'ISO, YMD'; SET TimeZone = 'UTC'; "
                           "SET IntervalStyle = 'postgres'; "
                           "SET client_encoding = 'UTF8'");
  bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  PQclear(r);
  return ok;
}

/* Readies a new connection for the library's use: notices ignored, the
 * session's settings pinned; false when they could not be set. */
bool es__session_prepare(PGconn *pg) {
  PQsetNoticeProcessor(pg, ignore_notice, NULL);
  return pin_settings(pg);
}

/* Builds the keyword/value arrays for PQconnectdbParams from conninfo plus
 * the store's options, so that libpq parses the user's string once. */
static es_status build_params(es_store *store, es__pool *pool,
                              const char *conninfo, const es_options *opts) {
  char *errmsg = NULL;
  PQconninfoOption *parsed = PQconninfoParse(conninfo, &errmsg);
  if (parsed == NULL) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", errmsg ? errmsg : "out of memory");
    PQfreemem(errmsg);
    es__scrub_quoted(msg, sizeof msg);
    size_t n = strlen(msg);
    while (n > 0 && msg[n - 1] == '\n')
      msg[--n] = '\0';
    return es__fail(store, ES_EINVAL, "invalid connection string: %s", msg);
  }

  /* Our additions: timeouts, iterative index scans for filtered search,
   * and session settings that nothing of ours may depend on but which are
   * pinned anyway (see pin_settings).  embstore.writer tells the store's
   * triggers (sql/006) that this session keeps the content hashes right
   * itself.  client_min_messages=error: a notice sent while connecting
   * (before a notice processor can be set) would reach the caller's
   * stderr, and afterwards they are ignored anyway.  PGOPTIONS applies as libpq would apply it, since our own
   * "options" would otherwise replace it. */
  const char *user_options = getenv("PGOPTIONS"), *user_timeout = NULL;
  size_t n = 0, bytes = 0;
  for (PQconninfoOption *o = parsed; o->keyword; o++) {
    if (o->val == NULL)
      continue;
    if (strcmp(o->keyword, "options") == 0)
      user_options = o->val;
    else if (strcmp(o->keyword, "connect_timeout") == 0)
      user_timeout = o->val;
    else if (strcmp(o->keyword, "client_encoding") != 0) {
      n++;
      bytes += strlen(o->keyword) + strlen(o->val) + 2;
    }
  }
  if (user_options && user_options[0] == '\0')
    user_options = NULL;
  char options[512], timeout[32];
  snprintf(options, sizeof options,
           "-c statement_timeout=%d -c lock_timeout=%d "
           "-c hnsw.iterative_scan=relaxed_order -c embstore.writer=on "
           "-c citus.propagate_set_commands=local "
           "-c client_min_messages=error " ES__PINNED_OPTIONS,
           opts->statement_timeout_ms, opts->statement_timeout_ms);
  snprintf(timeout, sizeof timeout, "%d",
           opts->connect_timeout_s < 2 ? 2 : opts->connect_timeout_s);
  /* client_encoding is ours whatever the string or PGCLIENTENCODING say:
   * text is UTF-8 in the library, and the server must not convert it. */
  const char *extra_keys[] = {"options", "connect_timeout", "client_encoding",
                              "fallback_application_name"};
  const char *extra_vals[] = {options, user_timeout ? user_timeout : timeout,
                              "UTF8", "embstore"};
  size_t nextra = sizeof extra_keys / sizeof extra_keys[0];
  for (size_t i = 0; i < nextra; i++)
    bytes += strlen(extra_keys[i]) + strlen(extra_vals[i]) + 2;
  if (user_options)
    bytes += strlen(user_options) + 1;

  pool->keys = calloc(n + nextra + 1, sizeof *pool->keys);
  pool->values = calloc(n + nextra + 1, sizeof *pool->values);
  pool->storage = malloc(bytes + 1);
  if (!pool->keys || !pool->values || !pool->storage) {
    PQconninfoFree(parsed);
    return es__fail(store, ES_ENOMEM, "out of memory building connection parameters");
  }
  char *p = pool->storage;
  size_t i = 0;
#define ES__PUT(dst, s) (dst = p, p += sprintf(p, "%s", s) + 1)
  for (PQconninfoOption *o = parsed; o->keyword; o++) {
    if (o->val == NULL || strcmp(o->keyword, "options") == 0 ||
        strcmp(o->keyword, "connect_timeout") == 0 ||
        strcmp(o->keyword, "client_encoding") == 0)
      continue;
    ES__PUT(pool->keys[i], o->keyword);
    ES__PUT(pool->values[i], o->val);
    i++;
  }
  for (size_t j = 0; j < nextra; j++) {
    ES__PUT(pool->keys[i], extra_keys[j]);
    if (j == 0 && user_options) {
      pool->values[i] = p;
      p += sprintf(p, "%s %s", user_options, options) + 1;
    } else {
      ES__PUT(pool->values[i], extra_vals[j]);
    }
    i++;
  }
#undef ES__PUT
  pool->keys[i] = pool->values[i] = NULL;
  PQconninfoFree(parsed);
  return ES_OK;
}

/* Prepares an empty pool for conninfo. */
es_status es__pool_init(es_store *store, es__pool *pool, const char *conninfo,
                        const es_options *opts) {
  memset(pool, 0, sizeof *pool);
  pthread_mutex_init(&pool->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&pool->cv, &ca);
  pthread_condattr_destroy(&ca);
  pool->size = opts->pool_size > 0 ? opts->pool_size : 1;
  pool->pids = calloc((size_t)pool->size, sizeof *pool->pids);
  if (pool->pids == NULL)
    return es__fail(store, ES_ENOMEM, "out of memory for the pool");
  pool->idle_timeout_ms = opts->idle_timeout_ms;
  /* Waiting for a free connection is bounded like a statement is. */
  pool->wait_timeout_ms =
      opts->statement_timeout_ms > 0 ? opts->statement_timeout_ms : 30000;
  return build_params(store, pool, conninfo, opts);
}

/* Puts pid to in the first slot that holds from: 0 to remember an open
 * connection's backend, its pid to forget it. */
static void swap_pid(es__pool *pool, int from, int to) {
  pthread_mutex_lock(&pool->mu);
  for (int i = 0; i < pool->size; i++)
    if (pool->pids[i] == from) {
      pool->pids[i] = to;
      break;
    }
  pthread_mutex_unlock(&pool->mu);
}

bool es__pool_owns_backend(es__pool *pool, int pid) {
  if (pid <= 0)
    return false; /* 0 marks a free slot */
  bool found = false;
  pthread_mutex_lock(&pool->mu);
  for (int i = 0; i < pool->size && !found; i++)
    found = pool->pids[i] == pid;
  pthread_mutex_unlock(&pool->mu);
  return found;
}

static void conn_free(es__pool *pool, es__conn *c) {
  if (c == NULL)
    return;
  if (c->pid > 0)
    swap_pid(pool, c->pid, 0);
  PQfinish(c->pg);
  free(c);
}

/* Closes every idle connection and frees the pool's memory.  Connections
 * still checked out are the caller's bug; they leak rather than crash. */
void es__pool_destroy(es__pool *pool) {
  es__conn *c = pool->idle;
  while (c) {
    es__conn *next = c->next;
    conn_free(pool, c);
    c = next;
  }
  pool->idle = NULL;
  free(pool->pids);
  free(pool->keys);
  free(pool->values);
  free(pool->storage);
  pthread_cond_destroy(&pool->cv);
  pthread_mutex_destroy(&pool->mu);
}

/* Opens a new connection of pool (outside the pool lock). */
static es_status conn_open(es_store *store, es__pool *pool, es__conn **out) {
  es__conn *c = calloc(1, sizeof *c);
  if (c == NULL)
    return es__fail(store, ES_ENOMEM, "out of memory opening a connection");
  c->pool = pool;
  c->pg = PQconnectdbParams(pool->keys, pool->values, 0);
  if (c->pg == NULL) {
    free(c);
    return es__fail(store, ES_ENOMEM, "out of memory opening a connection");
  }
  if (PQstatus(c->pg) != CONNECTION_OK) {
    char what[600];
    snprintf(what, sizeof what, "cannot connect to %s",
             pool->redacted ? pool->redacted : store->redacted);
    es__fail_pg(store, c->pg, NULL, what);
    es__last_err(store)->code = ES_ECONNECT;
    es__last_err(store)->transient = true;
    conn_free(pool, c);
    return ES_ECONNECT;
  }
  if (!es__session_prepare(c->pg)) {
    es_status rc = es__fail_pg(store, c->pg, NULL, "cannot set the session's "
                               "date, time zone and encoding settings");
    conn_free(pool, c);
    return rc;
  }
  c->pid = PQbackendPID(c->pg);
  swap_pid(pool, 0, c->pid);
  *out = c;
  return ES_OK;
}

/* Hands out an idle connection of pool, opens a new one, or waits up to
 * wait_ms for one. */
static es_status acquire(es_store *store, es__pool *pool, es__conn **out,
                         int wait_ms) {
  es__conn *stale = NULL;
  int64_t deadline = es__now_ms() + wait_ms;

  pthread_mutex_lock(&pool->mu);
  for (;;) {
    /* Close what has idled too long, oldest at the tail. */
    int64_t now = es__now_ms();
    es__conn **pp = &pool->idle;
    while (*pp) {
      if (pool->idle_timeout_ms > 0 &&
          now - (*pp)->idle_since_ms >= pool->idle_timeout_ms) {
        es__conn *c = *pp;
        *pp = c->next;
        c->next = stale;
        stale = c;
        pool->open--;
      } else {
        pp = &(*pp)->next;
      }
    }
    if (pool->idle) {
      es__conn *c = pool->idle;
      pool->idle = c->next;
      c->next = NULL;
      pthread_mutex_unlock(&pool->mu);
      while (stale) {
        es__conn *next = stale->next;
        conn_free(pool, stale);
        stale = next;
      }
      *out = c;
      return ES_OK;
    }
    if (pool->open < pool->size) {
      pool->open++;
      pthread_mutex_unlock(&pool->mu);
      while (stale) {
        es__conn *next = stale->next;
        conn_free(pool, stale);
        stale = next;
      }
      es_status rc = conn_open(store, pool, out);
      if (rc != ES_OK) {
        pthread_mutex_lock(&pool->mu);
        pool->open--;
        pthread_cond_signal(&pool->cv);
        pthread_mutex_unlock(&pool->mu);
      }
      return rc;
    }
    if (now >= deadline) {
      pthread_mutex_unlock(&pool->mu);
      if (wait_ms == 0)
        return ES_ETIMEOUT;
      return es__fail(store, ES_ETIMEOUT,
                      "no free connection within %d ms: all %d pooled "
                      "connections are busy (raise the pool size)",
                      pool->wait_timeout_ms, pool->size);
    }
    struct timespec ts = {.tv_sec = deadline / 1000,
                          .tv_nsec = (deadline % 1000) * 1000000};
    pthread_cond_timedwait(&pool->cv, &pool->mu, &ts);
  }
}

es_status es__acquire(es_store *store, es__conn **out) {
  return acquire(store, &store->pool, out, store->pool.wait_timeout_ms);
}

es_status es__acquire_quiet(es_store *store, es__conn **out) {
  return acquire(store, &store->pool, out, 0);
}

es_status es__acquire_now(es_store *store, es__pool *pool, es__conn **out) {
  return acquire(store, pool, out, 0);
}

/* Closes a connection instead of pooling it. */
void es__discard(es_store *store, es__conn *conn) {
  (void)store;
  if (conn == NULL)
    return;
  es__pool *pool = conn->pool;
  conn_free(pool, conn);
  pthread_mutex_lock(&pool->mu);
  pool->open--;
  pthread_cond_signal(&pool->cv);
  pthread_mutex_unlock(&pool->mu);
}

/* Returns a healthy idle connection to the front of the idle list. */
void es__release(es_store *store, es__conn *conn) {
  if (conn == NULL)
    return;
  if (PQstatus(conn->pg) != CONNECTION_OK ||
      PQtransactionStatus(conn->pg) != PQTRANS_IDLE) {
    es__discard(store, conn);
    return;
  }
  es__pool *pool = conn->pool;
  conn->idle_since_ms = es__now_ms();
  pthread_mutex_lock(&pool->mu);
  conn->next = pool->idle;
  pool->idle = conn;
  pthread_cond_signal(&pool->cv);
  pthread_mutex_unlock(&pool->mu);
}
