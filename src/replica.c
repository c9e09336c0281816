/* replica.c - reads on a streaming replica, with read-your-writes.
 *
 * With es_options.read_conninfo set, search, get, list and statistics run
 * on a pool of connections to it; everything else stays on the primary.
 * A read may use the replica's server only when it
 *   - is a standby of this store's primary: in recovery, with the
 *     primary's system identifier and database;
 *   - has replayed every commit this handle made (the primary's WAL
 *     position after each COMMIT is noted in write_lsn), and, for a read
 *     whose answer is cached, the "fence": the primary's position after
 *     the commits of others the listener heard of;
 *   - has replayed a position the primary had at most max_replica_lag_ms
 *     ago.  The handle samples the primary's position every quarter of
 *     the bound; a standby that replayed a sample taken t ms ago misses
 *     at most t ms of commits, whatever the clocks or the network say.
 * What a connection's server had replayed is asked in one query and kept
 * with the connection: replay only grows, so the question is asked again
 * only when the kept answer no longer proves a read safe.  Otherwise, or
 * when the replica cannot be reached or fails, the read runs on the
 * primary: never an error because of the replica.  A replica that cannot
 * be reached is not tried again for replica_retry_ms (then one read
 * probes it while the others still go to the primary).
 *
 * The samples are taken by a thread of the handle's own, at open and then
 * every quarter of the bound, so that a read finds one that the standby
 * has had time to replay (a read that took its own would race the WAL it
 * follows to the standby).
 *
 * A pooler that sends each statement to another server (pgpool-II and
 * the like) defeats the per-connection finding: name the standbys
 * themselves, or a pooler in session mode. */
#include <assert.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define SAMPLES 8     /* the primary's positions kept, newest first */
#define ID_MAX 96     /* "system identifier/database" */

typedef struct sample {
  uint64_t lsn;
  int64_t at_ms; /* monotonic; 0: none */
} sample;

struct es__replica {
  es__pool pool;
  pthread_mutex_t mu;
  char primary_id[ID_MAX]; /* "" until the primary was asked */
  uint64_t write_lsn;      /* this handle's last commit, WAL bytes */
  uint64_t unsure;         /* commits whose position could not be read */
  uint64_t changes;        /* other writers' commits heard of */
  uint64_t asked_unsure;   /* unsure and changes when the primary's */
  uint64_t asked_changes;  /* position was last asked */
  uint64_t fence_lsn;      /* that position */
  sample samples[SAMPLES]; /* [0] newest */
  int64_t down_until_ms;   /* not tried before this (monotonic) */
  bool probing;            /* a reader tries it after down_until_ms */
  int64_t lag_ms;          /* as the last read found it, -1: not known */
  es_replica_state state;  /* the last read's finding */
  int64_t reads, fallbacks;
  pthread_t sampler;       /* takes the samples */
  pthread_cond_t cv;       /* wakes it to stop */
  bool running, stop;
};

/* The primary's WAL position, in bytes, past everything inserted so far
 * (a commit that did not wait for its flush too), and who it is.  An
 * insert position just past a page's header is the page boundary before
 * it: no record lies between, and a standby's replay stops there. */
#define WAL_POS_SQL                                                          \
  "SELECT (CASE WHEN i % s = 40 THEN i - 40 WHEN i % b = 24 THEN i - 24 "    \
  "ELSE i END)::bigint, (SELECT system_identifier::text FROM "               \
  "pg_control_system()) || '/' || current_database() FROM (SELECT "          \
  "pg_current_wal_insert_lsn() - '0/0' AS i, "                               \
  "current_setting('wal_block_size')::numeric AS b, "                        \
  "pg_size_bytes(current_setting('wal_segment_size')) AS s) p"

/* A replica's server in one round trip: whether it is a standby, what it
 * has replayed, who it is, and the age of the last commit it replayed
 * (shown when it is too far behind; never trusted: clocks differ). */
static const char status_sql[] =
    "SELECT pg_is_in_recovery(), (coalesce(pg_last_wal_replay_lsn(), '0/0') "
    "- '0/0')::bigint, (SELECT system_identifier::text FROM "
    "pg_control_system()) || '/' || current_database(), "
    "(extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()) "
    "* 1000)::bigint";

es_status es__replica_new(es_store *s, const char *conninfo,
                          es__replica **out) {
  *out = NULL;
  es__replica *r = calloc(1, sizeof *r);
  if (r == NULL)
    return es__fail(s, ES_ENOMEM, "out of memory for the replica pool");
  pthread_mutex_init(&r->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&r->cv, &ca);
  pthread_condattr_destroy(&ca);
  r->lag_ms = -1;
  r->state = ES_REPLICA_OK;
  *out = r;
  /* The pool parses the string first: its message says what is wrong
   * (without a secret). */
  es_status rc = es__pool_init(s, &r->pool, conninfo, &s->opts);
  if (rc != ES_OK)
    return es__fail_wrap(s, rc, "the read connection string: ");
  char *redacted = es__conninfo_redact(conninfo);
  if (redacted == NULL)
    return es__fail(s, ES_ENOMEM, "out of memory for the replica pool");
  r->pool.redacted = redacted;
  return ES_OK;
}

void es__replica_free(es__replica *r) {
  if (r == NULL)
    return;
  pthread_mutex_lock(&r->mu);
  bool running = r->running;
  r->stop = true;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
  if (running)
    pthread_join(r->sampler, NULL);
  pthread_cond_destroy(&r->cv);
  char *redacted = (char *)r->pool.redacted;
  es__pool_destroy(&r->pool);
  pthread_mutex_destroy(&r->mu);
  free(redacted);
  free(r);
}

bool es__replica_owns(const es__replica *r, const es__conn *c) {
  return r != NULL && c != NULL && c->pool == &r->pool;
}

/* A commit, or a change outside a transaction (an index build, a VACUUM,
 * a validated key), whose position is unknown: the next read asks the
 * primary for its position, which is past it. */
static void note_unsure(es__replica *r) {
  pthread_mutex_lock(&r->mu);
  r->unsure++;
  pthread_mutex_unlock(&r->mu);
}

void es__replica_wrote(es_store *s) {
  if (s->replica != NULL)
    note_unsure(s->replica);
}

/* The bigint in field col of res's one row, as WAL bytes; false when
 * none. */
static bool lsn_of(const PGresult *res, int col, uint64_t *out) {
  if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
      PQnfields(res) <= col || PQgetisnull(res, 0, col))
    return false;
  char *end;
  long long v = strtoll(PQgetvalue(res, 0, col), &end, 10);
  if (*end != '\0' || v < 0)
    return false;
  *out = (uint64_t)v;
  return true;
}

es_status es__replica_commit(es_store *s, es__conn *c) {
  es__replica *r = s->replica;
  if (!PQsendQuery(c->pg, "COMMIT; " WAL_POS_SQL)) {
    es_status rc = es__fail_pg(s, c->pg, NULL, "cannot commit");
    note_unsure(r); /* whether it reached the server is not known */
    return rc;
  }
  /* The first result is the COMMIT's and decides; the position only
   * serves read-your-writes, which stays safe without it. */
  PGresult *res = PQgetResult(c->pg);
  es_status rc = ES_OK;
  if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
    rc = es__fail_pg(s, c->pg, res, "cannot commit");
    if (PQstatus(c->pg) != CONNECTION_OK)
      note_unsure(r); /* lost with the answer: it may have committed */
  }
  PQclear(res);
  bool noted = false;
  while ((res = PQgetResult(c->pg)) != NULL) {
    uint64_t lsn;
    if (rc == ES_OK && !noted && lsn_of(res, 0, &lsn)) {
      pthread_mutex_lock(&r->mu);
      if (lsn > r->write_lsn)
        r->write_lsn = lsn;
      pthread_mutex_unlock(&r->mu);
      noted = true;
    }
    PQclear(res);
  }
  if (rc == ES_OK && !noted)
    note_unsure(r);
  return rc;
}

void es__replica_changed(es_store *s) {
  es__replica *r = s->replica;
  if (r == NULL)
    return;
  pthread_mutex_lock(&r->mu);
  r->changes++;
  pthread_mutex_unlock(&r->mu);
}

/* The newest sample no older than max_ms that a server which replayed
 * `replayed` has replayed; its age in *age_ms.  Under mu (or on a copy). */
static bool proven(const sample *smp, uint64_t replayed, int64_t now,
                   int max_ms, int64_t *age_ms) {
  for (int i = 0; i < SAMPLES && smp[i].at_ms > 0; i++) {
    int64_t age = now - smp[i].at_ms;
    if (age > max_ms)
      break;
    if (smp[i].lsn <= replayed) {
      *age_ms = age;
      return true;
    }
  }
  return false;
}

/* What a read needs of the replica, taken under mu at one moment. */
typedef struct want {
  uint64_t need;           /* position it must have replayed */
  sample samples[SAMPLES];
  char primary_id[ID_MAX];
} want;

/* Asks the primary for its position and identity; records it as the
 * newest sample, the fence, and the position of the commits whose own was
 * not known (all counted before asking, so it is past them).  quiet: a
 * busy pool is not waited for.  false when it could not say. */
static bool ask_primary(es_store *s, bool quiet) {
  es__replica *r = s->replica;
  pthread_mutex_lock(&r->mu);
  uint64_t unsure_now = r->unsure, changes = r->changes;
  pthread_mutex_unlock(&r->mu);
  es__conn *c = NULL;
  es__err saved = *es__last_err(s);
  bool ok = (quiet ? es__acquire_quiet(s, &c) : es__acquire(s, &c)) == ES_OK;
  uint64_t lsn = 0;
  char id[ID_MAX] = "";
  int64_t at = 0;
  if (ok) {
    at = es__now_ms(); /* before the question: the answer is newer */
    PGresult *res = PQexec(c->pg, WAL_POS_SQL);
    ok = lsn_of(res, 0, &lsn) && !PQgetisnull(res, 0, 1);
    if (ok)
      snprintf(id, sizeof id, "%s", PQgetvalue(res, 0, 1));
    PQclear(res);
    es__release(s, c);
  }
  *es__last_err(s) = saved;
  if (!ok)
    return false;
  pthread_mutex_lock(&r->mu);
  if (lsn > r->fence_lsn)
    r->fence_lsn = lsn;
  if (lsn > r->write_lsn && unsure_now != r->asked_unsure)
    r->write_lsn = lsn;
  if (unsure_now > r->asked_unsure)
    r->asked_unsure = unsure_now;
  if (changes > r->asked_changes)
    r->asked_changes = changes;
  if (at > r->samples[0].at_ms) {
    memmove(&r->samples[1], &r->samples[0],
            (SAMPLES - 1) * sizeof r->samples[0]);
    r->samples[0] = (sample){lsn, at};
  }
  snprintf(r->primary_id, sizeof r->primary_id, "%s", id);
  pthread_mutex_unlock(&r->mu);
  return true;
}

/* How often the sampler asks: a quarter of the bound, at least 10 ms. */
static int sample_every_ms(const es_store *s) {
  int q = s->opts.max_replica_lag_ms / 4;
  return q < 10 ? 10 : q;
}

/* The sampler thread: a sample every quarter of the bound until told to
 * stop. */
static void *sampler(void *arg) {
  es_store *s = arg;
  es__replica *r = s->replica;
  int64_t tried = 0; /* the last attempt: a failed one is not repeated at once */
  pthread_mutex_lock(&r->mu);
  while (!r->stop) {
    int64_t last = r->samples[0].at_ms > tried ? r->samples[0].at_ms : tried;
    int64_t due = last + sample_every_ms(s);
    if (es__now_ms() < due) {
      struct timespec ts = {.tv_sec = due / 1000,
                            .tv_nsec = (due % 1000) * 1000000};
      pthread_cond_timedwait(&r->cv, &r->mu, &ts);
      continue;
    }
    tried = es__now_ms();
    pthread_mutex_unlock(&r->mu);
    ask_primary(s, true); /* busy or away: the next round */
    pthread_mutex_lock(&r->mu);
  }
  pthread_mutex_unlock(&r->mu);
  return NULL;
}

es_status es__replica_start(es_store *s) {
  es__replica *r = s->replica;
  ask_primary(s, false); /* the first sample, now: reads can use it soon */
  if (es__thread_start(&r->sampler, sampler, s) != 0)
    return es__fail(s, ES_ENOMEM, "cannot start the replica's sampler thread");
  pthread_mutex_lock(&r->mu);
  r->running = true;
  pthread_mutex_unlock(&r->mu);
  return ES_OK;
}

/* Fills *w; asks the primary for its position first when this handle
 * made a commit whose position is unknown, when a fenced read follows
 * news of others' commits, when no sample is young enough to prove
 * anything (the sampler is late), or when the primary's identity is not
 * known yet.  false when the primary could not say (the read then goes
 * there anyway). */
static bool wanted(es_store *s, bool fence, want *w) {
  es__replica *r = s->replica;
  int64_t now = es__now_ms();
  pthread_mutex_lock(&r->mu);
  bool ask = r->unsure != r->asked_unsure ||
             (fence && r->changes != r->asked_changes) ||
             r->primary_id[0] == '\0' || r->samples[0].at_ms == 0 ||
             now - r->samples[0].at_ms > s->opts.max_replica_lag_ms;
  pthread_mutex_unlock(&r->mu);
  if (ask && !ask_primary(s, false))
    return false;
  pthread_mutex_lock(&r->mu);
  w->need = r->write_lsn;
  if (fence && r->fence_lsn > w->need)
    w->need = r->fence_lsn;
  memcpy(w->samples, r->samples, sizeof w->samples);
  memcpy(w->primary_id, r->primary_id, sizeof w->primary_id);
  pthread_mutex_unlock(&r->mu);
  return true;
}

/* Whether conn's server may answer a read that wants w: from what was
 * kept, else asked.  *lag receives the bound proven (or, when it is too
 * far behind, the age of its last replayed commit; -1: not known);
 * false with the state why not. */
static bool usable(es_store *s, es__conn *c, const want *w,
                   es_replica_state *why, int64_t *lag) {
  int max = s->opts.max_replica_lag_ms;
  int64_t now = es__now_ms();
  *lag = -1;
  if (c->checked_ms > 0 && c->replayed_lsn >= w->need &&
      proven(w->samples, c->replayed_lsn, now, max, lag))
    return true;
  PGresult *res = PQexec(c->pg, status_sql);
  if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
      PQnfields(res) != 4) {
    PQclear(res);
    *why = ES_REPLICA_DOWN;
    return false;
  }
  bool standby = PQgetvalue(res, 0, 0)[0] == 't';
  bool same = !PQgetisnull(res, 0, 2) &&
              strcmp(PQgetvalue(res, 0, 2), w->primary_id) == 0;
  uint64_t replayed = 0;
  lsn_of(res, 1, &replayed);
  int64_t age = PQgetisnull(res, 0, 3) ? -1 : strtoll(PQgetvalue(res, 0, 3), NULL, 10);
  PQclear(res);
  if (!standby || !same) {
    *why = ES_REPLICA_INVALID;
    return false;
  }
  c->replayed_lsn = replayed;
  c->checked_ms = now;
  if (replayed < w->need) {
    *why = ES_REPLICA_BEHIND;
    return false;
  }
  if (!proven(w->samples, replayed, now, max, lag)) {
    *why = ES_REPLICA_LAGGING;
    *lag = age;
    return false;
  }
  return true;
}

/* Notes what a read found; down_ms > 0: not tried again for so long
 * (at least 1 ms: a probe after it is made by one read alone). */
static void note(es__replica *r, es_replica_state st, int64_t lag, bool used,
                 int down_ms) {
  pthread_mutex_lock(&r->mu);
  r->state = st;
  r->lag_ms = lag;
  if (used)
    r->reads++;
  else
    r->fallbacks++;
  if (st == ES_REPLICA_DOWN || st == ES_REPLICA_INVALID) {
    if (down_ms > 0 || r->down_until_ms > 0)
      r->down_until_ms = es__now_ms() + (down_ms > 0 ? down_ms : 1);
  } else {
    r->down_until_ms = 0; /* it answered: reachable */
  }
  r->probing = false;
  pthread_mutex_unlock(&r->mu);
}

/* Whether a failure on the replica is its own (the primary may answer)
 * rather than an answer: the caller's mistake, which the primary would
 * refuse too, or a document the replica does not hold (as stale as the
 * bounds allow; this handle's own writes were waited for). */
static bool replica_fault(es_store *s, es_status rc) {
  const es__err *e = es__last_err(s);
  if (e->transient)
    return true;
  switch (rc) {
  case ES_EINVAL:
  case ES_EDIM:
  case ES_ENOMEM:
  case ES_ENOTFOUND:
    return false;
  default:
    return true;
  }
}

/* Tries the read on the replica: true when it answered (*rc its
 * outcome), false when the primary must. */
static bool try_replica(es_store *s, bool fence, es__op_fn fn, void *ctx,
                        es__served *served, es_status *rc) {
  es__replica *r = s->replica;
  int retry = s->opts.replica_retry_ms;
  want w;
  pthread_mutex_lock(&r->mu);
  bool skip = es__now_ms() < r->down_until_ms || r->probing;
  if (!skip && r->down_until_ms > 0)
    r->probing = true; /* one read probes it; the others use the primary */
  pthread_mutex_unlock(&r->mu);
  if (skip) {
    served->state = ES_REPLICA_DOWN;
    pthread_mutex_lock(&r->mu);
    r->fallbacks++;
    pthread_mutex_unlock(&r->mu);
    return false;
  }
  if (!wanted(s, fence, &w)) { /* the primary did not answer */
    pthread_mutex_lock(&r->mu);
    served->state = r->state;
    pthread_mutex_unlock(&r->mu);
    note(r, served->state, -1, false, 0);
    return false;
  }
  es__conn *c = NULL;
  es__err saved = *es__last_err(s);
  /* Never waits for a busy pool: the primary answers meanwhile. */
  es_status arc = es__acquire_now(s, &r->pool, &c);
  if (arc != ES_OK) {
    *es__last_err(s) = saved;
    pthread_mutex_lock(&r->mu); /* busy: the state stays as it was */
    served->state = arc == ES_ECONNECT ? ES_REPLICA_DOWN : r->state;
    pthread_mutex_unlock(&r->mu);
    note(r, served->state, -1, false, arc == ES_ECONNECT ? retry : 0);
    return false;
  }
  if (!usable(s, c, &w, &served->state, &served->lag_ms)) {
    es_replica_state st = served->state;
    if (st == ES_REPLICA_INVALID || st == ES_REPLICA_DOWN)
      es__discard(s, c); /* another server, or a broken connection */
    else
      es__release(s, c);
    note(r, st, served->lag_ms, false,
         st == ES_REPLICA_INVALID || st == ES_REPLICA_DOWN ? retry : 0);
    return false;
  }
  es__clear_err(s);
  *rc = fn(s, c, ctx);
  es__rollback(c);
  bool lost = PQstatus(c->pg) != CONNECTION_OK;
  es__release(s, c);
  if (*rc == ES_OK || !replica_fault(s, *rc)) {
    served->replica = true;
    served->state = ES_REPLICA_OK;
    note(r, ES_REPLICA_OK, served->lag_ms, true, 0);
    return true;
  }
  /* The replica failed where the primary may not: a lost connection, a
   * query cancelled by a conflict with recovery, a store it has not
   * replayed yet. */
  served->state = ES_REPLICA_DOWN;
  served->lag_ms = -1;
  note(r, ES_REPLICA_DOWN, -1, false, lost ? retry : 0);
  return false;
}

es_status es__run_read(es_store *s, const char *operation, bool fence,
                       es__op_fn fn, void *ctx, es__served *served) {
  es__served local;
  if (served == NULL)
    served = &local;
  memset(served, 0, sizeof *served);
  served->lag_ms = -1;
  if (s->replica == NULL)
    return es__run(s, operation, true, fn, ctx);
  double t0 = es__clock_ms();
  es_status rc = ES_OK;
  if (!try_replica(s, fence, fn, ctx, served, &rc)) {
    es__clear_err(s);
    rc = es__run(s, NULL, true, fn, ctx);
  }
  /* Timed from the start, the replica's attempt included. */
  if (operation != NULL)
    es__metric(s, operation, es__elapsed_ms(t0), rc == ES_OK,
               rc == ES_OK ? NULL : es__last_err(s)->msg, NULL);
  return rc;
}

void es__replica_runtime(es_store *s, es_runtime *out) {
  es__replica *r = s->replica;
  if (r == NULL)
    return;
  out->replica = 1;
  pthread_mutex_lock(&r->mu);
  out->replica_reads = r->reads;
  out->replica_fallbacks = r->fallbacks;
  out->replica_lag_ms = r->lag_ms;
  out->replica_state = r->state;
  pthread_mutex_unlock(&r->mu);
  pthread_mutex_lock(&r->pool.mu);
  out->replica_pool_open = r->pool.open;
  pthread_mutex_unlock(&r->pool.mu);
}
