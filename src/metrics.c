/* metrics.c - performance metrics, buffered and written in batches.
 *
 * Operations append a record to an in-memory buffer (one mutex, no I/O);
 * a background thread per store writes the buffer with one INSERT every
 * second (or sooner when it fills), and prunes rows older than the
 * retention.  Writing never blocks or fails the operation measured: when
 * the buffer is full or the database stays away, records are dropped.
 * Reading them back is an operation of its own (metrics_report.c). */
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "json.h"

#define CAPACITY 4096     /* records buffered at most */
#define FLUSH_AT 256      /* wake the writer early from this many */
#define FLUSH_EVERY_MS 1000
#define PRUNE_EVERY_MS (3600 * 1000)

typedef struct record {
  char *operation;
  double ms;
  bool ok;
  char *error;
  char *metadata;
  int64_t at_us; /* when recorded: microseconds since the Unix epoch */
} record;

struct es__metrics {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pthread_t thread;
  bool running, stop;
  record *buf;
  size_t n;
  int64_t last_prune_ms;
  int64_t opened_ms;
  int retention_s;
};

/* Frees what a record owns. */
static void record_free(record *r) {
  free(r->operation);
  free(r->error);
  free(r->metadata);
}

/* Writes records[0..n) with one statement on conn; false on failure. */
static bool write_records(es__conn *c, record *recs, size_t n) {
  assert(c != NULL && recs != NULL && n > 0);
  es__buf a[6] = {{0}};
  bool ok = true;
  for (int k = 0; k < 6; k++)
    ok = ok && es__buf_append(&a[k], "{", 1);
  for (size_t i = 0; ok && i < n; i++) {
    /* Integers only: "%.3f" would follow the host program's LC_NUMERIC,
     * and a timestamp in text the server's DateStyle. */
    char us[32], at[32];
    snprintf(us, sizeof us, "%lld", (long long)llround(recs[i].ms * 1000.0));
    snprintf(at, sizeof at, "%lld", (long long)recs[i].at_us);
    ok = es__array_elem(&a[0], recs[i].operation, i == 0) &&
         es__array_elem(&a[1], us, i == 0) &&
         es__array_elem(&a[2], recs[i].ok ? "t" : "f", i == 0) &&
         es__array_elem(&a[3], recs[i].error, i == 0) &&
         es__array_elem(&a[4], recs[i].metadata ? recs[i].metadata : "{}", i == 0) &&
         es__array_elem(&a[5], at, i == 0);
  }
  for (int k = 0; k < 6; k++)
    ok = ok && es__buf_append(&a[k], "}", 1);
  if (ok) {
    const char *v[6] = {a[0].data, a[1].data, a[2].data,
                        a[3].data, a[4].data, a[5].data};
    PGresult *r = es__exec_stmt(c, ES__Q_METRICS_INSERT, 6, v, NULL, NULL, 0);
    ok = es__res_ok(r);
    PQclear(r);
  }
  for (int k = 0; k < 6; k++)
    es__buf_free(&a[k]);
  return ok;
}

/* Takes the buffer and writes it; prunes old rows now and then. */
static void flush(es_store *s, bool prune_due) {
  es__metrics *m = s->metrics;
  pthread_mutex_lock(&m->mu);
  record *recs = m->buf;
  size_t n = m->n;
  m->buf = calloc(CAPACITY, sizeof *m->buf);
  if (m->buf == NULL) { /* keep the old buffer rather than lose the store */
    m->buf = recs;
    pthread_mutex_unlock(&m->mu);
    return;
  }
  m->n = 0;
  pthread_mutex_unlock(&m->mu);

  es__conn *c = NULL;
  bool written = n == 0;
  if ((n > 0 || prune_due) && es__acquire_quiet(s, &c) == ES_OK) {
    written = n == 0 || write_records(c, recs, n);
    if (prune_due && m->retention_s > 0) {
      char secs[32];
      snprintf(secs, sizeof secs, "%d", m->retention_s);
      const char *v[1] = {secs};
      PQclear(es__exec_stmt(c, ES__Q_METRICS_PRUNE, 1, v, NULL, NULL, 0));
    }
    es__release(s, c);
  }
  if (!written) {
    /* The database is away (or refused): keep the records for the next
     * round, ahead of newer ones, as far as the buffer has room. */
    pthread_mutex_lock(&m->mu);
    size_t room = CAPACITY - m->n, keep = n < room ? n : room;
    memmove(m->buf + keep, m->buf, m->n * sizeof *m->buf);
    memcpy(m->buf, recs + (n - keep), keep * sizeof *recs);
    m->n += keep;
    pthread_mutex_unlock(&m->mu);
    for (size_t i = 0; i < n - keep; i++)
      record_free(&recs[i]);
    free(recs);
    return;
  }
  for (size_t i = 0; i < n; i++)
    record_free(&recs[i]);
  free(recs);
}

/* The writer thread: flushes every FLUSH_EVERY_MS, or as soon as
 * FLUSH_AT records wait, and prunes hourly, until stopped. */
static void *writer(void *arg) {
  es_store *s = arg;
  es__metrics *m = s->metrics;
  pthread_mutex_lock(&m->mu);
  while (!m->stop) {
    int64_t deadline = es__now_ms() + FLUSH_EVERY_MS;
    struct timespec ts = {.tv_sec = deadline / 1000,
                          .tv_nsec = (deadline % 1000) * 1000000};
    while (!m->stop && m->n < FLUSH_AT && es__now_ms() < deadline)
      pthread_cond_timedwait(&m->cv, &m->mu, &ts);
    bool prune = es__now_ms() - m->last_prune_ms >= PRUNE_EVERY_MS;
    if (prune)
      m->last_prune_ms = es__now_ms();
    pthread_mutex_unlock(&m->mu);
    flush(s, prune);
    pthread_mutex_lock(&m->mu);
  }
  pthread_mutex_unlock(&m->mu);
  return NULL;
}

/* Creates the buffer and starts the writer thread. */
es_status es__metrics_start(es_store *s) {
  es__metrics *m = calloc(1, sizeof *m);
  if (m == NULL || (m->buf = calloc(CAPACITY, sizeof *m->buf)) == NULL) {
    free(m);
    return es__fail(s, ES_ENOMEM, "out of memory");
  }
  pthread_mutex_init(&m->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&m->cv, &ca);
  pthread_condattr_destroy(&ca);
  m->retention_s = s->opts.metrics_retention_s;
  m->opened_ms = es__now_ms();
  m->last_prune_ms = m->opened_ms - PRUNE_EVERY_MS; /* prune soon after open */
  s->metrics = m;
  if (es__thread_start(&m->thread, writer, s) != 0) {
    s->metrics = NULL;
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
    free(m->buf);
    free(m);
    return es__fail(s, ES_ENOMEM, "cannot start the metrics writer thread");
  }
  m->running = true;
  return ES_OK;
}

/* Stops the writer thread, writes what is left and frees the buffer. */
void es__metrics_stop(es_store *s) {
  es__metrics *m = s->metrics;
  if (m == NULL)
    return;
  pthread_mutex_lock(&m->mu);
  m->stop = true;
  pthread_cond_signal(&m->cv);
  pthread_mutex_unlock(&m->mu);
  if (m->running)
    pthread_join(m->thread, NULL);
  /* What came in after the writer's last round; and the retention is
   * applied at least once per handle, even by a short-lived process. */
  flush(s, m->last_prune_ms < m->opened_ms);
  for (size_t i = 0; i < m->n; i++)
    record_free(&m->buf[i]);
  free(m->buf);
  pthread_cond_destroy(&m->cv);
  pthread_mutex_destroy(&m->mu);
  free(m);
  s->metrics = NULL;
}

/* Buffers one record (dropped when the buffer is full). */
void es__metric(es_store *s, const char *operation, double ms, bool ok,
                const char *error, const char *metadata) {
  assert(s != NULL && ms >= 0);
  es__metrics *m = s->metrics;
  if (m == NULL || operation == NULL)
    return;
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  pthread_mutex_lock(&m->mu);
  if (m->n == CAPACITY) {
    pthread_mutex_unlock(&m->mu);
    return;
  }
  record *r = &m->buf[m->n];
  r->operation = strdup(operation);
  r->ms = ms;
  r->ok = ok;
  r->error = error ? strdup(error) : NULL;
  r->metadata = metadata ? strdup(metadata) : NULL;
  r->at_us = (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
  if (r->operation == NULL || (error && r->error == NULL) ||
      (metadata && r->metadata == NULL)) {
    record_free(r); /* dropped whole rather than written without a part */
  } else {
    m->n++;
    if (m->n >= FLUSH_AT)
      pthread_cond_signal(&m->cv);
  }
  pthread_mutex_unlock(&m->mu);
}

/* Writes what is buffered, in the calling thread. */
void es__metrics_flush_now(es_store *s) {
  if (s->metrics)
    flush(s, false);
}
