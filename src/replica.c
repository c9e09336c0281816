/* replica.c - reads on a streaming replica, with read-your-writes.
 *
 * With es_options.read_conninfo set, search, get, list and statistics run
 * on a pool of connections to it; everything else stays on the primary.
 * A read may use the replica only when its server
 *   - has replayed every commit this handle made (the primary's WAL
 *     position after each COMMIT is noted in write_lsn), and every commit
 *     the listener heard about before a read whose answer is cached (the
 *     fence: one position asked of the primary after such news);
 *   - is at most max_replica_lag_ms behind.
 * What a connection's server had replayed, and its lag, are asked in one
 * query and kept with the connection: a replay position only grows, and a
 * lag L measured t ms ago is at most L + t now, so the question is asked
 * again only when the kept answer no longer proves the read safe.
 * Otherwise, or when the replica cannot be reached or fails, the read runs
 * on the primary: never an error because of the replica.  A replica that
 * cannot be reached is not tried again for replica_retry_ms. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct es__replica {
  es__pool pool;
  char *redacted;
  pthread_mutex_t mu;
  uint64_t write_lsn;      /* this handle's last commit, WAL bytes */
  uint64_t unsure;         /* commits whose position could not be read */
  uint64_t changes;        /* other writers' commits heard of */
  uint64_t asked_unsure;   /* unsure and changes when the primary's */
  uint64_t asked_changes;  /* position was last asked */
  uint64_t fence_lsn;      /* that position */
  int64_t down_until_ms;   /* not tried before this (monotonic) */
  int64_t lag_ms;          /* last measured, -1: never */
  es_replica_state state;  /* the last read's finding */
  int64_t reads, fallbacks;
};

/* A replica's position and lag in one round trip.  A server that is not in
 * recovery (a libpq multi-host string may name the primary too) answers
 * with its own position and no lag.  The lag is 0 while the server has
 * replayed all it received and still receives; otherwise it is the age
 * of the last commit it replayed, which overstates an idle primary's lag
 * (safe: the read then goes to the primary); NULL (no commit replayed
 * yet) counts as too far behind. */
static const char status_sql[] =
    "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() "
    "ELSE pg_current_wal_lsn() END - '0/0')::bigint, "
    "CASE WHEN NOT pg_is_in_recovery() THEN 0 "
    "WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() "
    "AND EXISTS (SELECT FROM pg_stat_wal_receiver) THEN 0 "
    "ELSE (extract(epoch FROM clock_timestamp() - "
    "pg_last_xact_replay_timestamp()) * 1000)::bigint END";

/* The primary's WAL position, in bytes, past everything inserted so far
 * (a commit that did not wait for its flush too).  An insert position
 * just past a page's header is the page boundary before it: no record
 * lies between, and a standby's replay stops at the boundary. */
#define WAL_POS_SQL                                                          \
  "SELECT (CASE WHEN i % s = 40 THEN i - 40 WHEN i % b = 24 THEN i - 24 "    \
  "ELSE i END)::bigint FROM (SELECT pg_current_wal_insert_lsn() - '0/0' AS i, " \
  "current_setting('wal_block_size')::numeric AS b, "                        \
  "pg_size_bytes(current_setting('wal_segment_size')) AS s) p"

es_status es__replica_new(es_store *s, const char *conninfo,
                          es__replica **out) {
  *out = NULL;
  es__replica *r = calloc(1, sizeof *r);
  if (r == NULL)
    return es__fail(s, ES_ENOMEM, "out of memory for the replica pool");
  pthread_mutex_init(&r->mu, NULL);
  r->lag_ms = -1;
  r->state = ES_REPLICA_OK;
  *out = r;
  r->redacted = es__conninfo_redact(conninfo);
  if (r->redacted == NULL)
    return es__fail(s, ES_EINVAL, "the read connection string does not parse");
  es_status rc = es__pool_init(s, &r->pool, conninfo, &s->opts);
  if (rc != ES_OK)
    return es__fail_wrap(s, rc, "read connection string: ");
  r->pool.redacted = r->redacted;
  return ES_OK;
}

void es__replica_free(es__replica *r) {
  if (r == NULL)
    return;
  if (r->pool.keys != NULL || r->pool.pids != NULL)
    es__pool_destroy(&r->pool);
  pthread_mutex_destroy(&r->mu);
  free(r->redacted);
  free(r);
}

bool es__replica_owns(const es__replica *r, const es__conn *c) {
  return r != NULL && c != NULL && c->pool == &r->pool;
}

/* Raises *lsn to at least v. */
static void raise_to(es__replica *r, uint64_t *lsn, uint64_t v) {
  pthread_mutex_lock(&r->mu);
  if (v > *lsn)
    *lsn = v;
  pthread_mutex_unlock(&r->mu);
}

/* A commit whose position could not be read: the next read asks the
 * primary for its position, which is past it. */
static void note_unsure(es__replica *r) {
  pthread_mutex_lock(&r->mu);
  r->unsure++;
  pthread_mutex_unlock(&r->mu);
}

/* The bigint in the first field of res, as WAL bytes; false when none. */
static bool lsn_of(const PGresult *res, uint64_t *out) {
  if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
      PQgetisnull(res, 0, 0))
    return false;
  char *end;
  long long v = strtoll(PQgetvalue(res, 0, 0), &end, 10);
  if (*end != '\0' || v < 0)
    return false;
  *out = (uint64_t)v;
  return true;
}

es_status es__replica_commit(es_store *s, es__conn *c) {
  PGresult *res = PQexec(c->pg, "COMMIT; " WAL_POS_SQL);
  es_status rc = ES_OK;
  uint64_t lsn;
  if (PQresultStatus(res) == PGRES_FATAL_ERROR)
    rc = es__fail_pg(s, c->pg, res, "cannot commit");
  else if (lsn_of(res, &lsn))
    raise_to(s->replica, &s->replica->write_lsn, lsn);
  else
    note_unsure(s->replica);
  PQclear(res);
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

/* The position a read must find replayed: this handle's writes, and with
 * fence the commits of others heard of so far.  The primary is asked for
 * its position (past all of those) once per batch of such news, and after
 * a commit whose position is unknown.  false when it could not say (then
 * the read goes there anyway). */
static bool needed_lsn(es_store *s, bool fence, uint64_t *need) {
  es__replica *r = s->replica;
  pthread_mutex_lock(&r->mu);
  uint64_t unsure_now = r->unsure, changes = r->changes;
  bool ask = unsure_now != r->asked_unsure ||
             (fence && changes != r->asked_changes);
  *need = r->write_lsn;
  if (fence && r->fence_lsn > *need)
    *need = r->fence_lsn;
  pthread_mutex_unlock(&r->mu);
  if (!ask)
    return true;
  es__conn *c = NULL;
  es__err saved = *es__last_err(s);
  bool ok = es__acquire(s, &c) == ES_OK;
  uint64_t lsn = 0;
  if (ok) {
    PGresult *res = PQexec(c->pg, WAL_POS_SQL);
    ok = lsn_of(res, &lsn);
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
  /* Counted before asking: the position is past all of them. */
  if (unsure_now > r->asked_unsure)
    r->asked_unsure = unsure_now;
  if (changes > r->asked_changes)
    r->asked_changes = changes;
  pthread_mutex_unlock(&r->mu);
  if (lsn > *need)
    *need = lsn;
  return true;
}

/* Whether conn's server may answer a read that needs position need:
 * from what was kept, else asked.  false with the state why not. */
static bool usable(es_store *s, es__conn *c, uint64_t need,
                   es_replica_state *why, int64_t *lag) {
  int max = s->opts.max_replica_lag_ms;
  int64_t now = es__now_ms();
  if (c->checked_ms > 0 && c->replayed_lsn >= need &&
      c->lag_ms + (now - c->checked_ms) <= max) {
    *lag = c->lag_ms + (now - c->checked_ms);
    return true;
  }
  PGresult *res = PQexec(c->pg, status_sql);
  if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
    PQclear(res);
    *why = ES_REPLICA_DOWN;
    return false;
  }
  uint64_t replayed = 0;
  lsn_of(res, &replayed); /* NULL: nothing replayed yet */
  c->replayed_lsn = replayed;
  c->lag_ms = PQgetisnull(res, 0, 1) ? INT64_MAX / 2
                                     : strtoll(PQgetvalue(res, 0, 1), NULL, 10);
  c->checked_ms = now;
  PQclear(res);
  *lag = c->lag_ms;
  if (c->lag_ms > max) {
    *why = ES_REPLICA_LAGGING;
    return false;
  }
  if (replayed < need) {
    *why = ES_REPLICA_BEHIND;
    return false;
  }
  return true;
}

/* Notes what a read found. */
static void note(es__replica *r, es_replica_state st, int64_t lag, bool used,
                 int64_t down_until) {
  pthread_mutex_lock(&r->mu);
  r->state = st;
  if (lag >= 0)
    r->lag_ms = lag < INT64_MAX / 2 ? lag : -1;
  if (used)
    r->reads++;
  else
    r->fallbacks++;
  if (down_until)
    r->down_until_ms = down_until;
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

es_status es__run_read(es_store *s, const char *operation, bool fence,
                       es__op_fn fn, void *ctx, es__served *served) {
  es__replica *r = s->replica;
  es__served local;
  if (served == NULL)
    served = &local;
  memset(served, 0, sizeof *served);
  served->lag_ms = -1;
  if (r == NULL)
    return es__run(s, operation, true, fn, ctx);
  served->state = ES_REPLICA_DOWN;
  pthread_mutex_lock(&r->mu);
  bool down = es__now_ms() < r->down_until_ms;
  pthread_mutex_unlock(&r->mu);
  uint64_t need = 0;
  es__conn *c = NULL;
  if (!down && needed_lsn(s, fence, &need)) {
    double t0 = es__clock_ms();
    es__err saved = *es__last_err(s);
    es_status rc = es__acquire_from(s, &r->pool, &c);
    if (rc != ES_OK) {
      bool unreachable = rc == ES_ECONNECT;
      note(r, ES_REPLICA_DOWN, -1, false,
           unreachable ? es__now_ms() + s->opts.replica_retry_ms : 0);
      *es__last_err(s) = saved;
      c = NULL;
    } else if (!usable(s, c, need, &served->state, &served->lag_ms)) {
      bool broken = served->state == ES_REPLICA_DOWN;
      note(r, served->state, served->lag_ms, false,
           broken ? es__now_ms() + s->opts.replica_retry_ms : 0);
      es__release(s, c); /* a broken one is closed */
      c = NULL;
    } else {
      es__clear_err(s);
      rc = fn(s, c, ctx);
      es__rollback(c);
      bool lost = PQstatus(c->pg) != CONNECTION_OK;
      es__release(s, c);
      if (rc == ES_OK || !replica_fault(s, rc)) {
        served->replica = true;
        served->state = ES_REPLICA_OK;
        note(r, ES_REPLICA_OK, served->lag_ms, true, 0);
        if (operation != NULL)
          es__metric(s, operation, es__elapsed_ms(t0), rc == ES_OK,
                     rc == ES_OK ? NULL : es__last_err(s)->msg, NULL);
        return rc;
      }
      /* The replica failed where the primary may not: a lost connection,
       * a query cancelled by a conflict with recovery, a store it has not
       * replayed yet.  The primary answers. */
      served->state = ES_REPLICA_DOWN;
      note(r, ES_REPLICA_DOWN, -1, false,
           lost ? es__now_ms() + s->opts.replica_retry_ms : 0);
    }
  } else if (!down) {
    note(r, ES_REPLICA_BEHIND, -1, false, 0);
    served->state = ES_REPLICA_BEHIND;
  } else {
    note(r, ES_REPLICA_DOWN, -1, false, 0);
  }
  es__clear_err(s);
  return es__run(s, operation, true, fn, ctx);
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
