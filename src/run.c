/* run.c - running an operation: on a pooled connection, retried after
 * transient failures with backoff, timed and recorded in the metrics.
 *
 * The retry loop and the clock live here, apart from sql.c's statements,
 * so that the metrics writer (which executes statements) and the
 * operations it measures do not depend on each other. */
#include <assert.h>
#include <signal.h>
#include <time.h>

#include "internal.h"

/* Milliseconds on the monotonic clock, with their fraction. */
double es__clock_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Milliseconds since t0, a value of es__clock_ms(). */
double es__elapsed_ms(double t0) { return es__clock_ms() - t0; }

/* Sleeps for ms milliseconds, through interruptions by signals. */
static void sleep_ms(int ms) {
  assert(ms >= 0);
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

/* Prepares the attempts of one operation: max_retries + 1 of them when
 * retry, else one; the first backoff is retry_backoff_ms (at least 1). */
void es__retry_init(es__retry *r, const es_store *store, bool retry) {
  assert(r != NULL && store != NULL && store->opts.max_retries >= 0);
  r->attempt = 0;
  r->attempts = retry ? store->opts.max_retries + 1 : 1;
  r->delay_ms = store->opts.retry_backoff_ms > 0 ? store->opts.retry_backoff_ms : 1;
}

/* Whether another attempt may start: sleeps the backoff, doubling it,
 * before every attempt but the first. */
bool es__retry_next(es__retry *r) {
  if (r->attempt >= r->attempts)
    return false;
  if (r->attempt > 0) {
    sleep_ms(r->delay_ms);
    r->delay_ms *= 2;
  }
  r->attempt++;
  return true;
}

/* Runs fn on a pooled connection, retrying transient failures. */
es_status es__run(es_store *store, const char *operation, bool retry,
                  es__op_fn fn, void *ctx) {
  assert(store != NULL && fn != NULL);
  es__retry rt;
  es_status rc = ES_OK;
  double t0 = es__clock_ms();
  es__retry_init(&rt, store, retry);
  while (es__retry_next(&rt)) {
    es__conn *conn = NULL;
    es__clear_err(store);
    rc = es__acquire(store, &conn);
    if (rc == ES_OK) {
      rc = fn(store, conn, ctx);
      if (rc != ES_OK)
        es__explain_lock_wait(store, conn);
      es__rollback(conn);
      es__release(store, conn);
    }
    if (rc == ES_OK || !es__last_err(store)->transient)
      break;
  }
  if (operation != NULL)
    es__metric(store, operation, es__elapsed_ms(t0), rc == ES_OK,
               rc == ES_OK ? NULL : es__last_err(store)->msg, NULL);
  return rc;
}

int es__thread_start(pthread_t *thread, void *(*fn)(void *), void *arg) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = pthread_create(thread, NULL, fn, arg);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return rc;
}
