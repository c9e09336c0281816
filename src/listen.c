/* listen.c - hearing about other processes' writes.
 *
 * The store's statement triggers (sql/010_notify.sql) send NOTIFY
 * embstore_changes, with the sources a statement touched, when its
 * transaction commits, whoever wrote: another embstore process, a batch
 * job, plain SQL.  A store handle with a search cache keeps one
 * connection of its own that LISTENs, and bumps the cache's generations
 * for what it is told (src/cache.c), so no cached answer outlives a write.
 *
 * A thread reads the connection as notifications arrive, so that the
 * server's queue never backs up behind an idle handle.  That alone would
 * leave a window: a search could be answered from the cache after a
 * writer's COMMIT returned and before the notification was read.  So a
 * search that the cache could answer first sends one empty query over
 * the listening connection.  A committing backend signals every listener
 * before its COMMIT returns, and a listening backend sends what it was
 * signalled for before it says it is ready for the next query: once the
 * empty query's answer is in, every notification of a transaction that
 * committed before the search began has been read and applied.  Searches
 * that arrive together share one round trip.
 *
 * When the connection is lost, everything cached is invalidated, the
 * cache answers nothing, and the thread reconnects with backoff; once it
 * listens again, everything is invalidated once more (notifications sent
 * while it was away are lost).  The TTL (cache_ttl_ms) stays a backstop. */
#define _GNU_SOURCE /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache.h"
#include "json.h"
#include "listen.h"

#define CHANNEL "embstore_changes"
#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 5000

enum state {
  IDLE,        /* not listening: never started, or the connection was lost */
  LISTENING,
  NO_TRIGGERS, /* the store sends no notifications (before migration 10) */
};

struct es__listener {
  es_store *store;
  es__cache *cache;
  pthread_mutex_t mu;   /* state, flags, counters, sync bookkeeping */
  pthread_cond_t cv;
  pthread_mutex_t io;   /* pg, broken, and every state change: libpq is
                           not thread-safe per connection.  Lock order:
                           io, then mu, then the cache's */
  PGconn *pg;           /* the listening connection, or NULL */
  bool broken;          /* pg failed; the thread closes it */
  enum state state;
  bool connecting;      /* a caller is connecting */
  bool running, stop;   /* the thread runs; it is asked to end */
  int64_t next_try_ms;  /* no connection attempt before (monotonic) */
  int backoff_ms;       /* after the next failed attempt */
  int wake[2];          /* a byte on wake[1] wakes the thread */
  pthread_t thread;
  uint64_t requested, synced; /* sync rounds asked for, and done */
  bool syncing;
  int64_t notifications, reconnects;
  bool listened;        /* it listened once: the next time is a reconnect */
};

es__listener *es__listener_new(es_store *s, es__cache *cache) {
  es__listener *l = calloc(1, sizeof *l);
  if (l == NULL)
    return NULL;
  if (pipe2(l->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
    free(l);
    return NULL;
  }
  l->store = s;
  l->cache = cache;
  pthread_mutex_init(&l->mu, NULL);
  pthread_mutex_init(&l->io, NULL);
  pthread_cond_init(&l->cv, NULL);
  l->state = IDLE;
  l->backoff_ms = BACKOFF_MIN_MS;
  return l;
}

static void wake(es__listener *l) {
  char b = 1;
  ssize_t n = write(l->wake[1], &b, 1); /* full pipe: already woken */
  (void)n;
}

void es__listener_free(es__listener *l) {
  if (l == NULL)
    return;
  pthread_mutex_lock(&l->mu);
  l->stop = true;
  bool running = l->running;
  pthread_mutex_unlock(&l->mu);
  if (running) {
    wake(l);
    pthread_join(l->thread, NULL);
  }
  if (l->pg)
    PQfinish(l->pg);
  close(l->wake[0]);
  close(l->wake[1]);
  pthread_cond_destroy(&l->cv);
  pthread_mutex_destroy(&l->io);
  pthread_mutex_destroy(&l->mu);
  free(l);
}

/* Applies one notification's payload: a JSON array of source ids (null:
 * documents without one), or "*".  Anything else invalidates everything,
 * which is always safe. */
static void apply(es__cache *cache, const char *payload) {
  es__json j;
  char err[64];
  es__buf src = {0};
  size_t len = strlen(payload);
  es__json_init(&j, payload, len, err, sizeof err);
  bool ok = es__json_eat(&j, '[');
  if (ok && es__json_peek(&j) == ']') {
    ok = false; /* the triggers never send an empty array */
  }
  while (ok) {
    if (es__json_literal(&j, "null")) {
      es__cache_invalidate_source(cache, NULL);
    } else if ((ok = es__json_string(&j, &src, "source") &&
                     strlen(src.data) == src.len)) {
      es__cache_invalidate_source(cache, src.data);
    } else {
      break;
    }
    if (es__json_peek(&j) == ']') {
      es__json_eat(&j, ']');
      ok = es__json_peek(&j) == -1;
      break;
    }
    ok = es__json_eat(&j, ',');
  }
  es__buf_free(&src);
  if (!ok)
    es__cache_invalidate_all(cache);
}

/* Reads and applies the notifications libpq holds.  Under io. */
static int64_t drain(es__listener *l) {
  int64_t n = 0;
  PGnotify *note;
  while ((note = PQnotifies(l->pg)) != NULL) {
    /* This handle's own writes invalidated its cache when they
     * committed. */
    if (strcmp(note->relname, CHANNEL) == 0 &&
        !es__pool_owns_backend(&l->store->pool, note->be_pid)) {
      /* The replica first: a search whose ticket follows the
       * invalidation must also find the fence raised. */
      es__replica_changed(l->store);
      apply(l->cache, note->extra);
      n++;
    }
    PQfreemem(note);
  }
  return n;
}

static void count(es__listener *l, int64_t n) {
  if (n == 0)
    return;
  pthread_mutex_lock(&l->mu);
  l->notifications += n;
  pthread_mutex_unlock(&l->mu);
}

/* Opens the listening connection: LISTEN, and whether the store has the
 * notify triggers.  NULL when it cannot (*no_triggers untouched). */
static PGconn *open_listening(es__listener *l, bool *no_triggers) {
  PGconn *pg = PQconnectdbParams(l->store->pool.keys, l->store->pool.values, 0);
  if (pg == NULL)
    return NULL;
  if (PQstatus(pg) != CONNECTION_OK || !es__session_prepare(pg)) {
    PQfinish(pg);
    return NULL;
  }
  PGresult *r = PQexec(pg, "LISTEN " CHANNEL);
  bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  PQclear(r);
  if (!ok) {
    PQfinish(pg);
    return NULL;
  }
  /* After LISTEN: a trigger created later is heard from the start. */
  r = PQexec(pg, "SELECT count(*) FROM pg_trigger WHERE tgrelid IN "
                 "(to_regclass('embeddings'), to_regclass('chunks')) AND "
                 "tgname LIKE 'embstore\\_notify\\_%' AND tgenabled = 'A'");
  ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
  if (ok)
    *no_triggers = atoi(PQgetvalue(r, 0, 0)) < 8;
  PQclear(r);
  if (!ok) {
    PQfinish(pg);
    return NULL;
  }
  return pg;
}

/* Sets the state, waking syncs that wait on it; under io.  Invalidates
 * everything when listening starts or stops: the cache cannot know what
 * it missed. */
static void set_state(es__listener *l, enum state st) {
  pthread_mutex_lock(&l->mu);
  if (st == LISTENING) {
    if (l->listened)
      l->reconnects++;
    l->listened = true;
  }
  l->state = st;
  pthread_cond_broadcast(&l->cv);
  pthread_mutex_unlock(&l->mu);
  es__replica_changed(l->store); /* what was missed; before the cache */
  es__cache_invalidate_all(l->cache);
}

/* Marks the connection lost (under io): the thread closes it, the next
 * caller connects again. */
static void lose(es__listener *l) {
  l->broken = true;
  set_state(l, IDLE);
  wake(l);
}

/* The thread: reads notifications as they come, so that the server's
 * queue never waits for this handle, and closes a connection that broke. */
static void *run(void *arg) {
  es__listener *l = arg;
  for (;;) {
    pthread_mutex_lock(&l->io);
    int fd = l->pg && !l->broken ? PQsocket(l->pg) : -1;
    pthread_mutex_unlock(&l->io);
    struct pollfd p[2] = {{.fd = l->wake[0], .events = POLLIN},
                          {.fd = fd, .events = POLLIN}};
    int ready = poll(p, fd >= 0 ? 2 : 1, -1);
    if (ready < 0 && errno != EINTR && errno != EAGAIN)
      break; /* cannot wait: searches then sync by themselves */
    if (p[0].revents) {
      char buf[64];
      while (read(l->wake[0], buf, sizeof buf) > 0) {
      }
    }
    pthread_mutex_lock(&l->mu);
    bool stop = l->stop;
    pthread_mutex_unlock(&l->mu);
    if (stop)
      break;
    int64_t n = 0;
    pthread_mutex_lock(&l->io);
    if (l->pg && !l->broken && fd == PQsocket(l->pg) && fd >= 0 && p[1].revents) {
      if (PQconsumeInput(l->pg) == 1 && PQstatus(l->pg) == CONNECTION_OK)
        n = drain(l);
      else
        lose(l);
    }
    if (l->pg && l->broken) {
      PQfinish(l->pg);
      l->pg = NULL;
      l->broken = false;
    }
    pthread_mutex_unlock(&l->io);
    count(l, n);
  }
  return NULL;
}

/* Connects (when not listening, nobody else is connecting and the
 * backoff allows) and starts the thread the first time.  The caller
 * connects, not the thread: the handle listens before the answer of the
 * search that started it is cached, and a search after a lost connection
 * reconnects at once instead of waiting for a timer. */
void es__listener_start(es__listener *l) {
  if (l == NULL)
    return;
  pthread_mutex_lock(&l->mu);
  bool go = l->state == IDLE && !l->connecting && !l->stop &&
            es__now_ms() >= l->next_try_ms;
  if (go)
    l->connecting = true;
  pthread_mutex_unlock(&l->mu);
  if (!go)
    return;
  bool no_triggers = false;
  PGconn *pg = open_listening(l, &no_triggers);
  pthread_mutex_lock(&l->io);
  if (pg && !no_triggers) {
    if (l->pg) /* the broken one, which the thread has not closed yet */
      PQfinish(l->pg);
    l->pg = pg;
    l->broken = false;
    set_state(l, LISTENING);
  } else if (pg) {
    PQfinish(pg); /* nothing will ever be heard: the TTL rules */
    set_state(l, NO_TRIGGERS);
  }
  pthread_mutex_unlock(&l->io);
  pthread_mutex_lock(&l->mu);
  l->connecting = false;
  if (pg == NULL) {
    l->next_try_ms = es__now_ms() + l->backoff_ms;
    l->backoff_ms = l->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS
                                                       : l->backoff_ms * 2;
  } else {
    l->backoff_ms = BACKOFF_MIN_MS;
  }
  if (pg && !no_triggers && !l->running)
    l->running = es__thread_start(&l->thread, run, l) == 0;
  pthread_mutex_unlock(&l->mu);
  if (pg)
    wake(l); /* the thread waits on the new connection */
}

/* One round trip over the listening connection, applying what comes
 * before its answer; false when the connection failed. */
static bool round_trip(es__listener *l) {
  pthread_mutex_lock(&l->io);
  bool ok = l->pg != NULL && !l->broken;
  int64_t n = 0;
  if (ok) {
    PGresult *r = PQexec(l->pg, "");
    ok = PQresultStatus(r) == PGRES_EMPTY_QUERY;
    PQclear(r);
    n = drain(l); /* PQexec kept the notifications that came first */
    if (!ok)
      lose(l);
  }
  pthread_mutex_unlock(&l->io);
  count(l, n);
  return ok;
}

bool es__listener_sync(es__listener *l) {
  if (l == NULL)
    return true;
  pthread_mutex_lock(&l->mu);
  uint64_t mine = ++l->requested;
  bool ok = false;
  for (;;) {
    if (l->state != LISTENING) {
      ok = l->state == NO_TRIGGERS;
      break;
    }
    if (l->synced >= mine) {
      ok = true;
      break;
    }
    if (l->syncing) { /* a round trip is under way: wait for the next */
      pthread_cond_wait(&l->cv, &l->mu);
      continue;
    }
    l->syncing = true;
    uint64_t covers = l->requested; /* every caller that arrived so far */
    pthread_mutex_unlock(&l->mu);
    bool done = round_trip(l);
    pthread_mutex_lock(&l->mu);
    l->syncing = false;
    if (done)
      l->synced = covers;
    pthread_cond_broadcast(&l->cv);
  }
  pthread_mutex_unlock(&l->mu);
  return ok;
}

void es__listener_counts(es__listener *l, es__listen_counts *out) {
  memset(out, 0, sizeof *out);
  if (l == NULL)
    return;
  pthread_mutex_lock(&l->mu);
  out->notifications = l->notifications;
  out->reconnects = l->reconnects;
  out->listening = l->state == LISTENING;
  pthread_mutex_unlock(&l->mu);
}
