/* error.c - the last failure of each thread on a store.
 *
 * A store is shared by threads, so "the last error" is kept per thread, the
 * way errno is.  One process-wide pthread key (created once) holds each
 * thread's list of records, one per store the thread has failed or asked
 * on; a key per store would run out at PTHREAD_KEYS_MAX (1,024) open
 * stores.  Records are found by the store's id, which is never reused, so
 * a stale record of a closed store cannot be taken for a new store at the
 * same address.  es_close frees the calling thread's record; another
 * thread's records of closed stores are freed when that thread exits (the
 * key's destructor) or when it next needs a new record. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* One thread's record for one store. */
typedef struct err_record {
  uint64_t store_id;
  struct err_record *next;
  es__err err;
} err_record;

/* The value of the key for a thread: set once, so that later changes to
 * the list never need pthread_setspecific (which may fail). */
typedef struct thread_errs {
  err_record *head;
} thread_errs;

static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t key;
static bool key_ok;

/* The ids of the open stores, ascending (ids only grow), so that a thread
 * can tell which of its records belong to closed stores. */
static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t *live_ids, next_id = 1;
static size_t n_live, cap_live;

/* Frees a thread's records when it exits. */
static void free_thread_errs(void *value) {
  thread_errs *t = value;
  for (err_record *r = t->head, *next; r != NULL; r = next) {
    next = r->next;
    free(r);
  }
  free(t);
}

/* Creates the one key of the per-thread lists (pthread_once). */
static void create_key(void) {
  key_ok = pthread_key_create(&key, free_thread_errs) == 0;
}

/* Index of id in live_ids, or n_live when it is not there (live_mu held). */
static size_t live_index(uint64_t id) {
  size_t lo = 0, hi = n_live;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (live_ids[mid] < id)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < n_live && live_ids[lo] == id ? lo : n_live;
}

/* Gives the store an id and counts it open.  ES_ENOMEM (recorded in the
 * store's open_err) when out of memory or out of thread-specific keys. */
es_status es__err_register(es_store *store) {
  pthread_once(&key_once, create_key);
  if (!key_ok)
    return es__fail(store, ES_ENOMEM, "cannot create the key of the "
                    "per-thread errors (the process has used all of its "
                    "PTHREAD_KEYS_MAX thread-specific keys)");
  pthread_mutex_lock(&live_mu);
  if (n_live == cap_live) {
    size_t cap = cap_live ? cap_live * 2 : 16;
    uint64_t *g = realloc(live_ids, cap * sizeof *g);
    if (g == NULL) {
      pthread_mutex_unlock(&live_mu);
      return es__fail(store, ES_ENOMEM, "out of memory");
    }
    live_ids = g;
    cap_live = cap;
  }
  store->err_id = next_id++;
  live_ids[n_live++] = store->err_id;
  pthread_mutex_unlock(&live_mu);
  return ES_OK;
}

/* The calling thread's list, or NULL when it has none yet. */
static thread_errs *thread_list(void) {
  return key_ok ? pthread_getspecific(key) : NULL;
}

/* The calling thread's record for store, or NULL. */
static err_record *find_record(const es_store *store) {
  thread_errs *t = thread_list();
  if (t == NULL || store->err_id == 0)
    return NULL;
  for (err_record *r = t->head; r != NULL; r = r->next)
    if (r->store_id == store->err_id)
      return r;
  return NULL;
}

/* Counts the store closed and frees the calling thread's record for it.
 * Safe on a store that was never registered. */
void es__err_unregister(es_store *store) {
  if (store->err_id == 0)
    return;
  thread_errs *t = thread_list();
  for (err_record **p = t ? &t->head : NULL; p != NULL && *p != NULL;
       p = &(*p)->next)
    if ((*p)->store_id == store->err_id) {
      err_record *r = *p;
      *p = r->next;
      free(r);
      break;
    }
  pthread_mutex_lock(&live_mu);
  size_t i = live_index(store->err_id);
  if (i < n_live) {
    memmove(live_ids + i, live_ids + i + 1, (n_live - i - 1) * sizeof *live_ids);
    n_live--;
  }
  if (n_live == 0) { /* nothing open: give the memory back */
    free(live_ids);
    live_ids = NULL;
    cap_live = 0;
  }
  pthread_mutex_unlock(&live_mu);
  store->err_id = 0;
}

/* Frees the calling thread's records of stores closed since. */
static void prune_closed(thread_errs *t) {
  pthread_mutex_lock(&live_mu);
  for (err_record **p = &t->head; *p != NULL;) {
    if (live_index((*p)->store_id) == n_live) {
      err_record *dead = *p;
      *p = dead->next;
      free(dead);
    } else {
      p = &(*p)->next;
    }
  }
  pthread_mutex_unlock(&live_mu);
}

/* The calling thread's list, created on first use; NULL when out of
 * memory. */
static thread_errs *thread_list_make(void) {
  thread_errs *t = thread_list();
  if (t != NULL || !key_ok)
    return t;
  t = calloc(1, sizeof *t);
  if (t == NULL || pthread_setspecific(key, t) != 0) {
    free(t);
    return NULL;
  }
  return t;
}

/* Returns the calling thread's record, creating it on first use.  When that
 * is impossible (out of memory, or the store never got an id because
 * es_open failed early), the store's shared open_err stands in. */
es__err *es__last_err(es_store *store) {
  err_record *r = find_record(store);
  if (r != NULL)
    return &r->err;
  thread_errs *t = store->err_id ? thread_list_make() : NULL;
  if (t == NULL)
    return &store->open_err;
  prune_closed(t);
  r = calloc(1, sizeof *r);
  if (r == NULL)
    return &store->open_err;
  r->store_id = store->err_id;
  r->next = t->head;
  t->head = r;
  return &r->err;
}

/* Forgets the calling thread's last failure. */
void es__clear_err(es_store *store) {
  es__err *e = es__last_err(store);
  e->code = ES_OK;
  e->transient = false;
  e->sqlstate[0] = '\0';
  e->msg[0] = '\0';
}

/* Records a failure with a formatted message. */
es_status es__fail(es_store *store, es_status code, const char *fmt, ...) {
  es__err *e = es__last_err(store);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->msg, sizeof e->msg, fmt, ap);
  va_end(ap);
  es__redact_secrets(e->msg, sizeof e->msg);
  es__utf8_scrub(e->msg);
  e->code = code;
  e->transient = false;
  e->sqlstate[0] = '\0';
  return code;
}

/* Replaces the message with prefix + ": " + the current message. */
es_status es__fail_wrap(es_store *store, es_status code, const char *prefix) {
  es__err *e = es__last_err(store);
  char old[sizeof e->msg];
  memcpy(old, e->msg, sizeof old);
  snprintf(e->msg, sizeof e->msg, "%s: %s", prefix, old);
  es__redact_secrets(e->msg, sizeof e->msg);
  es__utf8_scrub(e->msg);
  e->code = code;
  return code;
}

/* Maps a SQLSTATE to a status, and says whether repeating may succeed. */
static es_status status_of_sqlstate(const char *st, bool *transient) {
  *transient = false;
  if (strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0) {
    *transient = true; /* serialization failure, deadlock */
    return ES_EDB;
  }
  if (strncmp(st, "08", 2) == 0 || strcmp(st, "57P01") == 0 ||
      strcmp(st, "57P02") == 0 || strcmp(st, "57P03") == 0) {
    *transient = true; /* connection lost, server shutting down/starting */
    return ES_ECONNECT;
  }
  if (strcmp(st, "57014") == 0 || strcmp(st, "55P03") == 0)
    return ES_ETIMEOUT; /* statement timeout, lock not available */
  if (strcmp(st, "22000") == 0 || strncmp(st, "22", 2) == 0)
    return ES_EINVAL; /* data exception */
  if (strcmp(st, "58P01") == 0)
    return ES_ENOVECTOR; /* extension control file missing */
  return ES_EDB;
}

/* Copies a server/libpq message without its trailing newline. */
static void copy_trimmed(char *dst, size_t cap, const char *src) {
  snprintf(dst, cap, "%s", src ? src : "");
  size_t n = strlen(dst);
  while (n > 0 && (dst[n - 1] == '\n' || dst[n - 1] == ' '))
    dst[--n] = '\0';
}

/* Records a failure reported by libpq or the server. */
es_status es__fail_pg(es_store *store, PGconn *pg, const PGresult *res,
                      const char *what) {
  es__err *e = es__last_err(store);
  char detail[768];
  const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
  bool transient = false;
  es_status code;

  if (res != NULL && PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY))
    copy_trimmed(detail, sizeof detail,
                 PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
  else if (res != NULL && PQresultErrorMessage(res)[0] != '\0')
    copy_trimmed(detail, sizeof detail, PQresultErrorMessage(res));
  else
    copy_trimmed(detail, sizeof detail, pg ? PQerrorMessage(pg) : "no connection");

  if (st != NULL) {
    code = status_of_sqlstate(st, &transient);
  } else {
    /* No SQLSTATE: libpq itself failed, almost always a lost connection. */
    code = (pg == NULL || PQstatus(pg) == CONNECTION_BAD) ? ES_ECONNECT : ES_EDB;
    transient = code == ES_ECONNECT;
  }
  /* A rejected COPY row says which column: name the field. */
  const char *context = res ? PQresultErrorField(res, PG_DIAG_CONTEXT) : NULL;
  const char *column = context ? strstr(context, ", column ") : NULL;
  if (column) {
    size_t n = strlen(detail);
    column += 9;
    size_t len = strcspn(column, ":\n");
    snprintf(detail + n, sizeof detail - n, " (in %.*s)", (int)(len > 64 ? 64 : len),
             column);
  }
  /* Who holds the locks is added by es__explain_lock_wait (locks.c), where
   * operations run: looking it up needs another connection. */
  char why[200] = "";
  bool timeout = st != NULL && strcmp(st, "57014") == 0;
  bool lock_wait = st != NULL && strcmp(st, "55P03") == 0;
  if (timeout && store->opts.statement_timeout_ms > 0)
    snprintf(why, sizeof why, "; the statement timeout is %d ms: another "
             "session may hold a lock this operation needs",
             store->opts.statement_timeout_ms);
  else if (lock_wait)
    snprintf(why, sizeof why, "; a lock this operation needs was not granted "
             "in time");
  if (st != NULL)
    snprintf(e->msg, sizeof e->msg, "%s: %s (SQLSTATE %s%s)", what, detail, st, why);
  else
    snprintf(e->msg, sizeof e->msg, "%s: %s", what, detail);
  es__redact_secrets(e->msg, sizeof e->msg);
  es__utf8_scrub(e->msg);
  e->code = code;
  e->transient = transient;
  snprintf(e->sqlstate, sizeof e->sqlstate, "%s", st ? st : "");
  return code;
}

/* Returns the calling thread's last failure message. */
const char *es_errmsg(const es_store *store) {
  if (store == NULL)
    return "no store (out of memory?)";
  const err_record *r = find_record(store);
  const es__err *e = r ? &r->err : &store->open_err;
  if (e->code == ES_OK && e->msg[0] == '\0')
    return "no error";
  return e->msg;
}
