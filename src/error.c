/* error.c - the last failure of each thread on a store.
 *
 * A store is shared by threads, so "the last error" is kept per thread
 * (a pthread key per store), the way errno is per thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Creates the key that holds each thread's es__err. */
int es__err_key_create(pthread_key_t *key) { return pthread_key_create(key, free); }

/* Deletes the key; the calling thread's record is freed with it. */
void es__err_key_delete(pthread_key_t key) {
  free(pthread_getspecific(key));
  pthread_setspecific(key, NULL);
  pthread_key_delete(key);
}

/* Returns the calling thread's record, creating it on first use.  When the
 * allocation fails, the store's shared open_err stands in. */
es__err *es__last_err(es_store *store) {
  es__err *e = pthread_getspecific(store->err_key);
  if (e != NULL)
    return e;
  e = calloc(1, sizeof *e);
  if (e == NULL || pthread_setspecific(store->err_key, e) != 0) {
    free(e);
    return &store->open_err;
  }
  return e;
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
  /* A lock wait that timed out names who holds the locks (looked up on
   * another connection: this one is in an aborted transaction). */
  char why[600] = "";
  bool timeout = st != NULL && strcmp(st, "57014") == 0;
  bool lock_wait = st != NULL && strcmp(st, "55P03") == 0;
  if (timeout && store->opts.statement_timeout_ms > 0)
    snprintf(why, sizeof why, "; the statement timeout is %d ms: another "
             "session may hold a lock this operation needs",
             store->opts.statement_timeout_ms);
  else if (lock_wait)
    snprintf(why, sizeof why, "; a lock this operation needs was not granted "
             "in time");
  if (timeout || lock_wait)
    es__describe_lock_holders(store, pg ? PQbackendPID(pg) : 0, why, sizeof why);
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
  es__err *e = pthread_getspecific(store->err_key);
  if (e == NULL)
    e = (es__err *)&store->open_err;
  if (e->code == ES_OK && e->msg[0] == '\0')
    return "no error";
  return e->msg;
}
